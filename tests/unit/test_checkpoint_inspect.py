"""`streamlearn checkpoint inspect`: the prequential scores are named as what they are."""

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streamlearn.app.cli import main
from streamlearn.checkpoint.inspect import describe
from streamlearn.daemon import Daemon
from tests.unit.test_daemon import Source, drain, make


def _checkpointed(tmp_path: Path, task: str, labels: Callable[[int], float]) -> Daemon:
    values = [json.dumps({"x": [i % 7, i % 3], "y": labels(i)}).encode() for i in range(120)]
    source = Source("in", [values])
    daemon, _ = make(tmp_path, source, model={"hidden": [4], "task": task})
    assert daemon.start()
    drain(daemon, source, timeout_s=60)  # a busy 2-core machine: seconds
    assert daemon.checkpoint("test")
    return daemon


def test_classification_shows_accuracy_and_mean_loss_not_a_sum_named_correct(
    tmp_path: Path,
) -> None:
    daemon = _checkpointed(tmp_path, "classification", lambda i: i % 2)
    scores = describe(tmp_path)["prequential"]
    stats = daemon.engine.stats
    assert set(scores) == {"samples", "accuracy", "mean_loss"}
    assert scores["samples"] == stats.count == 120
    assert scores["accuracy"] == pytest.approx(stats.cumulative("correct"), abs=1e-6)
    assert 0 <= scores["accuracy"] <= 1
    assert scores["mean_loss"] == pytest.approx(stats.cumulative("loss"), abs=1e-6)


def test_regression_shows_mean_absolute_error_and_no_accuracy(tmp_path: Path) -> None:
    daemon = _checkpointed(tmp_path, "regression", lambda i: float(i % 7) / 7)
    scores = describe(tmp_path)["prequential"]
    assert set(scores) == {"samples", "mean_abs_error", "mean_loss"}
    expected = daemon.engine.stats.cumulative("abs_error")
    assert scores["mean_abs_error"] == pytest.approx(expected, abs=1e-6) and expected > 0


def test_the_cli_prints_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _checkpointed(tmp_path, "classification", lambda i: i % 2)
    assert main(["checkpoint", "inspect", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    line = next(text for text in out if text.startswith("prequential"))
    assert "'accuracy':" in line and "correct" not in line
