"""Settings from the environment: every bad variable is one line naming it, exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamlearn.core.errors import SettingsError
from streamlearn.settings import load_settings
from streamlearn.settings.env import read_environment

SECTIONS = ("kafka", "model", "drift")


def test_values_become_the_mapping_a_yaml_file_would_give() -> None:
    data = read_environment(
        {
            "STREAMLEARN_MODEL__HIDDEN": "[128, 64]",
            "STREAMLEARN_MODEL__N_FEATURES": "null",
            "STREAMLEARN_KAFKA": '{"group_id": "a"}',
            "STREAMLEARN_KAFKA__CLIENT_ID": "b",
            "STREAMLEARN_DRIFT__CUSUM__K": "0.25",
            "HOME": "/root",
        },
        SECTIONS,
    )
    assert data == {
        "model": {"hidden": [128, 64], "n_features": None},
        "kafka": {"group_id": "a", "client_id": "b"},
        "drift": {"cusum": {"k": "0.25"}},
    }


def test_names_of_other_tools_are_left_alone() -> None:
    # Compose reads STREAMLEARN_AUTH_TOKEN and STREAMLEARN_BIND; CI sets another.
    assert (
        read_environment(
            {
                "STREAMLEARN_AUTH_TOKEN": "x",
                "STREAMLEARN_BIND": "0.0.0.0",
                "STREAMLEARN_REQUIRE_PROMTOOL": "1",
            },
            SECTIONS,
        )
        == {}
    )


def test_every_bad_variable_is_named_in_one_line() -> None:
    with pytest.raises(SettingsError) as info:
        read_environment(
            {
                "STREAMLEARN_DRIFT__CUSUM": "{bad",
                "STREAMLEARN_MODL__HIDDEN": "[3]",
                "STREAMLEARN_MODEL____X": "1",
            },
            SECTIONS,
        )
    assert info.value.problems == [
        "STREAMLEARN_DRIFT__CUSUM: not valid JSON (Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1))",
        "STREAMLEARN_MODEL____X: empty key between '__' delimiters",
        "STREAMLEARN_MODL__HIDDEN: unknown section 'modl'; sections: kafka, model, drift",
    ]


@pytest.mark.parametrize(
    ("variable", "value", "line"),
    [
        (
            "STREAMLEARN_MODEL__HIDDEN",
            "abc",
            "model.hidden: Input should be a valid list (got 'abc')",
        ),
        (
            "STREAMLEARN_KAFKA",
            "abc",
            "kafka: Input should be a valid dictionary or instance of KafkaSettings (got 'abc')",
        ),
    ],
)
def test_a_value_of_the_wrong_shape_is_a_validation_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, line: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as info:
        load_settings(None)
    assert info.value.problems == [line]


def run_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", "run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_run_exits_2_with_one_unwrapped_line_per_bad_variable() -> None:
    proc = run_with(
        {
            "STREAMLEARN_MODEL__HIDDEN": "abc",
            "STREAMLEARN_DRIFT__CUSUM": "{bad",
            "STREAMLEARN_MODL__HIDDEN": "[3]",
        }
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "error: invalid settings:"
    # One line each, however long: log parsers read stderr from a pipe.
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "STREAMLEARN_DRIFT__CUSUM",
        "STREAMLEARN_MODL__HIDDEN",
    ]
    assert max(len(line) for line in lines) > 100
