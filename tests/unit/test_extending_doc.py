"""The examples of docs/extending.md work: each python block that opens with its file name
is written to that file, imported, held to its conformance check and used by the daemon's
parts through the setting that names it."""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch

from streamlearn.core.drift.monitor import DriftMonitor
from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.settings import DriftSettings, EngineSettings, ExpertsSettings, ModelSettings
from streamlearn.testing import check_expert
from tests.docs.markdown import ROOT
from tests.support.shifted import blobs, learn

# tests/docs/markdown.py strips every line of a fence at the margin, indentation included,
# which python cannot lose: the blocks are read here as written.
PYTHON = re.compile(r'^```python\n(?P<code>"""(?P<name>\w+\.py)\b.*?)^```$', re.M | re.S)


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The doc's named python blocks, as files in a directory on ``sys.path``."""
    for found in PYTHON.finditer((ROOT / "docs" / "extending.md").read_text()):
        (tmp_path / found["name"]).write_text(found["code"])
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for name in ("mydetectors", "test_mydetectors", "myexperts"):
        sys.modules.pop(name, None)


def example(name: str) -> ModuleType:
    return importlib.import_module(name)


def test_the_doc_names_its_example_files(examples: Path) -> None:
    assert sorted(p.name for p in examples.glob("*.py")) == [
        "mydetectors.py",
        "myexperts.py",
        "test_mydetectors.py",
    ]


def test_the_detector_example_passes_its_own_test(examples: Path) -> None:
    example("test_mydetectors").test_mean_shift_keeps_the_promises()


def test_the_detector_example_runs_in_the_engine_under_its_name(examples: Path) -> None:
    spec = "mydetectors:MeanShift"
    monitor = DriftMonitor(DriftSettings(detector=spec))
    assert type(monitor.detector("0")).__name__ == "MeanShift"
    engine = Engine(
        ModelSettings(hidden=[8], max_classes=4, learning_rate=0.01),
        EngineSettings(),
        DriftSettings(detector=spec, warmup=200, refractory=50),
        ExpertsSettings(enabled=False),
    )
    x, y = blobs(0, 1_500)
    learn(engine, x, y)
    kinds = []
    for start in range(0, 600, 32):  # every label moves: the loss jumps
        rows, labels = x[start : start + 32].tolist(), ((y[start : start + 32] + 1) % 4).tolist()
        result = engine.process([Sample(r, int(c)) for r, c in zip(rows, labels, strict=True)])
        kinds += [(e.kind, e.detector) for e in result.drift_events]
    assert ("drift", spec) in kinds


def test_the_expert_example_keeps_the_promises_and_learns(examples: Path) -> None:
    build = example("myexperts").build
    x, y = blobs(0, 64)
    check_expert(lambda: build(8, 4, ModelSettings()), torch.tensor(x), torch.tensor(y))
    engine = Engine(ModelSettings(factory="myexperts:build", max_classes=4), EngineSettings())
    learn(engine, *blobs(0, 2_000))
    assert engine.stats.rolling("correct") > 0.8
