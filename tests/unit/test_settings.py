import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamlearn.errors import SettingsError
from streamlearn.settings import dump_defaults, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("STREAMLEARN_"):
            monkeypatch.delenv(key)


def test_default_yaml_lists_every_default_exactly():
    documented = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    assert documented == dump_defaults()
    assert load_settings(ROOT / "config" / "default.yaml") == load_settings()


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text("kafka:\n  group_id: from-file\n  input_topic: in\n")
    monkeypatch.setenv("STREAMLEARN_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("STREAMLEARN_MODEL__HIDDEN", "[8, 4]")
    settings = load_settings(path)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.input_topic == "in"
    assert settings.model.hidden == [8, 4]


def test_unknown_key_names_the_field_and_what_is_allowed():
    with pytest.raises(SettingsError) as info:
        load_settings(None, kafka={"bootstrap_server": "x"})
    [problem] = info.value.problems
    assert problem.startswith("kafka.bootstrap_server: unknown setting")
    assert "bootstrap_servers" in problem


def test_unknown_section_is_an_error():
    with pytest.raises(SettingsError, match=r"modle: unknown setting; allowed here: kafka"):
        load_settings(None, modle={})


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(SettingsError, match=r"model\.optimizer: Input should be 'sgd' or 'adam'"):
        load_settings(None, model={"optimizer": "adamw"})


def test_cross_field_rules():
    with pytest.raises(SettingsError, match="heartbeat_interval_ms must be at most a third"):
        load_settings(None, kafka={"session_timeout_ms": 3000, "heartbeat_interval_ms": 2000})
    with pytest.raises(SettingsError, match="n_features=3 but 2 features are named"):
        load_settings(None, model={"n_features": 3, "features": ["a", "b"]})


def test_cli_reports_bad_settings_with_exit_code_2_and_no_traceback(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  learning_rate: -1\n  activaton: relu\n")
    proc = subprocess.run([sys.executable, "-m", "streamlearn", "run", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "model.learning_rate" in proc.stderr and "model.activaton" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_an_unreadable_file(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "streamlearn", "run", "--config",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def test_a_warm_up_too_short_for_the_false_alarm_rate_is_refused_at_load():
    with pytest.raises(SettingsError, match="warmup=30 is too short"):
        load_settings(None, drift={"warmup": 30})
    assert load_settings(None, drift={"warmup": 50, "false_alarms_per_100k": 2_000})


def test_error_signal_needs_a_classifier():
    with pytest.raises(SettingsError, match=r"drift\.signal: 'error' needs model\.task"):
        load_settings(None, model={"task": "regression"}, drift={"signal": "error"})


def test_nested_drift_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("STREAMLEARN_DRIFT__CUSUM__K", "0.25")
    monkeypatch.setenv("STREAMLEARN_DRIFT__DETECTOR", "page_hinkley")
    settings = load_settings(None)
    assert settings.drift.cusum.k == 0.25 and settings.drift.detector == "page_hinkley"


def test_class_balanced_replay_needs_a_classifier():
    with pytest.raises(SettingsError, match=r"class_balanced needs model\.task"):
        load_settings(None, model={"task": "regression"},
                      experts={"replay": {"class_balanced": True}})


def test_expert_settings_come_from_the_environment_and_are_checked(monkeypatch):
    with pytest.raises(SettingsError, match=r"experts\.max_experts"):
        load_settings(None, experts={"max_experts": 0})
    monkeypatch.setenv("STREAMLEARN_EXPERTS__MAX_EXPERTS", "3")
    monkeypatch.setenv("STREAMLEARN_EXPERTS__SELECTOR__THRESHOLD", "0.9")
    settings = load_settings(None)
    assert settings.experts.max_experts == 3 and settings.experts.selector.threshold == 0.9


def test_entropy_methods_need_a_classifier_and_auto_resolves_per_task():
    with pytest.raises(SettingsError, match=r"adapt\.method: 'tent' needs model\.task"):
        load_settings(None, model={"task": "regression"}, adapt={"method": "tent"})
    auto = load_settings(None).adapt
    assert auto.method_for("classification", batch_norm=True) == "cotta"
    assert auto.method_for("regression", batch_norm=True) == "norm"
    assert auto.method_for("classification", batch_norm=False) == "none"
    tent = load_settings(None, adapt={"method": "tent"}).adapt
    assert tent.method_for("classification", batch_norm=False) == "tent"


def test_image_settings_are_checked(monkeypatch):
    with pytest.raises(SettingsError, match=r"architecture: 'cnn' needs image_shape"):
        load_settings(None, model={"architecture": "cnn"})
    with pytest.raises(SettingsError, match=r"image_shape \[8, 8\] holds 64 values, but there "
                                            r"are 10 features"):
        load_settings(None, model={"image_shape": [8, 8], "n_features": 10})
    with pytest.raises(SettingsError, match=r"give \[H, W\] or \[C, H, W\]"):
        load_settings(None, model={"image_shape": [64]})
    monkeypatch.setenv("STREAMLEARN_ADAPT__GUARDS__WINDOW", "128")
    assert load_settings(None).adapt.guards.window == 128


def test_a_memory_of_one_row_is_refused():
    with pytest.raises(SettingsError, match=r"adapt\.memory: .*0 \(off\) or at least 2"):
        load_settings(None, adapt={"memory": 1})
