import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from streamlearn.core.errors import SettingsError
from streamlearn.settings import dump_defaults, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("STREAMLEARN_"):
            monkeypatch.delenv(key)


def test_default_yaml_lists_every_default_exactly() -> None:
    documented = yaml.safe_load((ROOT / "config" / "default.yaml").read_text())
    assert documented == dump_defaults()
    assert load_settings(ROOT / "config" / "default.yaml") == load_settings()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("kafka:\n  group_id: from-file\n  input_topic: in\n")
    monkeypatch.setenv("STREAMLEARN_KAFKA__GROUP_ID", "from-env")
    monkeypatch.setenv("STREAMLEARN_MODEL__HIDDEN", "[8, 4]")
    settings = load_settings(path)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.input_topic == "in"
    assert settings.model.hidden == [8, 4]


def test_unknown_key_names_the_field_and_what_is_allowed() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, kafka={"bootstrap_server": "x"})
    [problem] = info.value.problems
    assert problem.startswith("kafka.bootstrap_server: unknown setting")
    assert "bootstrap_servers" in problem


def test_unknown_section_is_an_error() -> None:
    with pytest.raises(SettingsError, match=r"modle: unknown setting; allowed here: kafka"):
        load_settings(None, modle={})


def test_bad_choice_lists_the_allowed_values() -> None:
    with pytest.raises(SettingsError, match=r"model\.optimizer: Input should be 'sgd' or 'adam'"):
        load_settings(None, model={"optimizer": "adamw"})


def test_cross_field_rules() -> None:
    with pytest.raises(SettingsError, match="heartbeat_interval_ms must be at most a third"):
        load_settings(None, kafka={"session_timeout_ms": 3000, "heartbeat_interval_ms": 2000})
    with pytest.raises(SettingsError, match="n_features=3 but 2 features are named"):
        load_settings(None, model={"n_features": 3, "features": ["a", "b"]})


def test_cli_reports_bad_settings_with_exit_code_2_and_no_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  learning_rate: -1\n  activaton: relu\n")
    proc = subprocess.run(
        [sys.executable, "-m", "streamlearn", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "model.learning_rate" in proc.stderr and "model.activaton" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_reports_an_unreadable_file(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "streamlearn", "run", "--config", str(tmp_path / "missing.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "cannot read" in proc.stderr


def test_a_warm_up_too_short_for_the_false_alarm_rate_is_refused_at_load() -> None:
    with pytest.raises(SettingsError, match="warmup=30 is too short"):
        load_settings(None, drift={"warmup": 30})
    # The default k (0.25) needs a longer baseline than k 0.5 for the same rate.
    assert load_settings(None, drift={"warmup": 100, "false_alarms_per_100k": 2_000})
    assert load_settings(
        None, drift={"warmup": 50, "false_alarms_per_100k": 2_000, "cusum": {"k": 0.5}}
    )


def test_error_signal_needs_a_classifier() -> None:
    with pytest.raises(SettingsError, match=r"drift\.signal: 'error' needs model\.task"):
        load_settings(None, model={"task": "regression"}, drift={"signal": "error"})


def test_nested_drift_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMLEARN_DRIFT__CUSUM__K", "0.4")
    monkeypatch.setenv("STREAMLEARN_DRIFT__DETECTOR", "page_hinkley")
    settings = load_settings(None)
    assert settings.drift.cusum.k == 0.4 and settings.drift.detector == "page_hinkley"


def test_class_balanced_replay_needs_a_classifier() -> None:
    with pytest.raises(SettingsError, match=r"class_balanced needs model\.task"):
        load_settings(
            None, model={"task": "regression"}, experts={"replay": {"class_balanced": True}}
        )


def test_expert_settings_come_from_the_environment_and_are_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SettingsError, match=r"experts\.max_experts"):
        load_settings(None, experts={"max_experts": 0})
    monkeypatch.setenv("STREAMLEARN_EXPERTS__MAX_EXPERTS", "3")
    monkeypatch.setenv("STREAMLEARN_EXPERTS__SELECTOR__THRESHOLD", "0.9")
    settings = load_settings(None)
    assert settings.experts.max_experts == 3 and settings.experts.selector.threshold == 0.9


def test_entropy_methods_need_a_classifier_and_auto_resolves_per_task() -> None:
    with pytest.raises(SettingsError, match=r"adapt\.method: 'tent' needs model\.task"):
        load_settings(None, model={"task": "regression"}, adapt={"method": "tent"})
    auto = load_settings(None).adapt
    assert auto.method_for("classification", batch_norm=True) == "tent"
    assert auto.method_for("regression", batch_norm=True) == "norm"
    assert auto.method_for("classification", batch_norm=False) == "none"
    tent = load_settings(None, adapt={"method": "tent"}).adapt
    assert tent.method_for("classification", batch_norm=False) == "tent"


def test_image_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SettingsError, match=r"architecture: 'cnn' needs image_shape"):
        load_settings(None, model={"architecture": "cnn"})
    with pytest.raises(
        SettingsError,
        match=r"image_shape \[8, 8\] holds 64 values, but there "
        r"are 10 features",
    ):
        load_settings(None, model={"image_shape": [8, 8], "n_features": 10})
    with pytest.raises(SettingsError, match=r"give \[H, W\] or \[C, H, W\]"):
        load_settings(None, model={"image_shape": [64]})
    monkeypatch.setenv("STREAMLEARN_ADAPT__GUARDS__WINDOW", "128")
    assert load_settings(None).adapt.guards.window == 128


def test_a_memory_of_one_row_is_refused() -> None:
    with pytest.raises(SettingsError, match=r"adapt\.memory: .*0 \(off\) or at least 2"):
        load_settings(None, adapt={"memory": 1})


# -- the bearer token ------------------------------------------------------------------------

GOOD_TOKEN = "c0ffee5e1d2a4b7f9e3c8a61d5b2"  # random-looking, 28 characters
WEAK_TOKENS = [
    "short-1a2b",
    "change-me",
    "ChangeMe",
    "CHANGE_ME_CHANGE_ME",
    "your-token-here",
    "your-secret-token-here",
    "password12345678",
    "streamlearn-token-2024",
    "xxxxxxxxxxxxxxxxxxxx",
]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=full_env,
    )


@pytest.mark.parametrize("token", WEAK_TOKENS)
def test_a_short_or_placeholder_token_is_refused_without_being_echoed(token: str) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(None, serve={"auth_token": token})
    [problem] = info.value.problems
    assert problem.startswith("serve.auth_token: ") and problem.endswith("(got <redacted>)")
    assert token not in str(info.value)
    assert load_settings(None, serve={"auth_token": GOOD_TOKEN}).serve.auth_token is not None


def test_a_token_from_the_environment_is_checked_and_never_echoed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMLEARN_SERVE__AUTH_TOKEN", "env-only-9f3")
    with pytest.raises(SettingsError, match=r"serve\.auth_token: .*shorter than 16") as info:
        load_settings(None)
    assert "env-only-9f3" not in str(info.value)


def test_a_token_from_the_yaml_file_is_checked_and_never_echoed(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("serve:\n  auth_token: Change-Me\n")
    with pytest.raises(SettingsError, match=r"serve\.auth_token: .*shorter than 16") as info:
        load_settings(path)
    assert "Change-Me" not in str(info.value)


def test_cross_field_errors_never_echo_the_section_or_its_token(tmp_path: Path) -> None:
    # A section's rule gets the section as input; the top level's gets every section.
    with pytest.raises(SettingsError, match="auth_token or auth_token_file") as info:
        load_settings(None, serve={"auth_token": GOOD_TOKEN, "auth_token_file": "t"})
    assert info.value.problems == [
        "serve: Value error, set auth_token or auth_token_file, not both"
    ]
    with pytest.raises(SettingsError, match=r"drift\.signal: 'error' needs") as info:
        load_settings(
            None,
            serve={"auth_token": GOOD_TOKEN},
            model={"task": "regression"},
            drift={"signal": "error"},
        )
    assert GOOD_TOKEN not in str(info.value)


def test_validation_error_text_never_shows_the_token() -> None:
    # Child processes validate the settings document they are sent and log what fails.
    from pydantic import ValidationError

    from streamlearn.settings import ServeSettings, Settings

    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"serve": {"auth_token": GOOD_TOKEN, "auth_token_file": "t"}})
    assert GOOD_TOKEN[:8] not in str(info.value)  # pydantic cuts the middle of long inputs
    with pytest.raises(ValidationError) as info:
        ServeSettings(auth_token="weak-token")
    assert "weak-token" not in str(info.value)


@pytest.mark.slow  # three daemons started and refused
def test_run_refuses_a_weak_token_with_exit_code_2_and_never_prints_it(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("serve:\n  auth_token: yaml-tok-7d1\n")
    from_file = run_cli("run", "--config", str(path))
    from_env = run_cli("run", env={"STREAMLEARN_SERVE__AUTH_TOKEN": "env-tok-5c2"})
    both = tmp_path / "both.yaml"
    both.write_text(f"serve:\n  auth_token: {GOOD_TOKEN}\n  auth_token_file: /t\n")
    cross = run_cli("run", "--config", str(both))
    for proc, token in (
        (from_file, "yaml-tok-7d1"),
        (from_env, "env-tok-5c2"),
        (cross, GOOD_TOKEN),
    ):
        assert proc.returncode == 2, proc.stderr
        assert "serve" in proc.stderr and "Traceback" not in proc.stderr
        assert token not in (proc.stderr + proc.stdout).replace("\n", "")  # rich wraps


@pytest.mark.parametrize("content", ["short-file-tok\n", "change-me-change-me\n", ""])
def test_a_weak_token_file_is_refused_naming_the_file_not_its_content(
    tmp_path: Path, content: str
) -> None:
    from streamlearn.serve.auth import TokenAuth
    from streamlearn.settings import ServeSettings

    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(SettingsError) as info:
        TokenAuth.from_settings(ServeSettings(auth_token_file=path))
    [problem] = info.value.problems
    assert problem.startswith(f"serve.auth_token_file: {path}: ")
    assert not content.strip() or content.strip() not in problem
    path.write_text(GOOD_TOKEN + "\n")
    assert TokenAuth.from_settings(ServeSettings(auth_token_file=path)).writes_enabled


def test_run_refuses_a_weak_token_file_with_exit_code_2(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("file-tok-3e8\n")
    proc = run_cli(
        "run",
        env={
            "STREAMLEARN_SERVE__AUTH_TOKEN_FILE": str(token),
            "STREAMLEARN_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
        },
    )
    assert proc.returncode == 2, proc.stderr
    assert "serve.auth_token_file" in proc.stderr and str(token) in proc.stderr.replace("\n", "")
    assert "file-tok-3e8" not in (proc.stderr + proc.stdout).replace("\n", "")


@pytest.mark.parametrize(
    ("setting", "env_name", "enabled"),
    [
        ("serve.http_port", "STREAMLEARN_SERVE__HTTP_PORT", "true"),
        ("serve.grpc_port", "STREAMLEARN_SERVE__GRPC_PORT", "true"),
        ("metrics.port", "STREAMLEARN_METRICS__PORT", "true"),
        ("metrics.port", "STREAMLEARN_METRICS__PORT", "false"),  # the learner alone
    ],
)
def test_a_port_in_use_stops_the_start_with_exit_code_1_naming_its_setting(
    setting: str, env_name: str, enabled: str
) -> None:
    import socket

    from streamlearn.app.embedded import free_port

    with socket.create_server(("127.0.0.1", free_port())) as taken:
        port = taken.getsockname()[1]
        env = {
            "STREAMLEARN_SERVE__ENABLED": enabled,
            "STREAMLEARN_SERVE__HOST": "127.0.0.1",
            "STREAMLEARN_SERVE__HTTP_PORT": str(free_port()),
            "STREAMLEARN_SERVE__GRPC_PORT": str(free_port()),
            "STREAMLEARN_METRICS__HOST": "127.0.0.1",
            "STREAMLEARN_METRICS__PORT": str(free_port()),
            "STREAMLEARN_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",
            env_name: str(port),
        }
        proc = run_cli("run", env=env)
    assert proc.returncode == 1, proc.stderr
    assert f"{setting} 127.0.0.1:{port}: Address already in use" in proc.stderr
    assert "Traceback" not in proc.stderr
