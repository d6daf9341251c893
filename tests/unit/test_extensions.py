"""User code named in settings: drift.detector and adapt.method take "package.module:name"
beside their built-in names, model.factory checks what it builds, and every mistake is an
error at build time that names the setting and what is wrong."""

from __future__ import annotations

import pytest
import torch

from streamlearn.core.adapt.adapter import Adapter
from streamlearn.core.drift.base import BaseDetector
from streamlearn.core.drift.cusum import Cusum
from streamlearn.core.drift.monitor import DriftMonitor
from streamlearn.core.drift.registry import DETECTORS
from streamlearn.core.engine import Engine
from streamlearn.core.errors import ModelError, SettingsError
from streamlearn.core.experts.expert import build_expert
from streamlearn.core.extensions import load_object, missing_members, protocol_members
from streamlearn.core.protocols import DriftDetector, Expert, Source
from streamlearn.core.types import Sample
from streamlearn.settings import (
    ADAPT_METHODS,
    DETECTOR_NAMES,
    AdaptSettings,
    DriftSettings,
    EngineSettings,
    ExpertsSettings,
    ModelSettings,
    load_settings,
)
from tests.support.plugins import StatsOnly
from tests.support.shifted import blobs, learn, miscalibrated


def test_the_settings_name_every_built_in_detector_and_method() -> None:
    assert tuple(DETECTORS) == DETECTOR_NAMES
    assert ADAPT_METHODS == ("auto", "none", "norm", "tent", "cotta")


@pytest.mark.parametrize("section, key", [("drift", "detector"), ("adapt", "method")])
def test_settings_take_user_code_and_refuse_other_names(section: str, key: str) -> None:
    spec = "tests.support.plugins:whatever"
    loaded = load_settings(None, **{section: {key: spec}})
    assert getattr(getattr(loaded, section), key) == spec  # only the form is checked here
    with pytest.raises(SettingsError, match=rf"{section}\.{key}: .*'package\.module:name'"):
        load_settings(None, **{section: {key: "no such thing"}})


def test_protocol_members_are_its_methods_and_properties() -> None:
    assert protocol_members(Expert) == [
        "learn",
        "load_state_dict",
        "module",
        "predict",
        "skipped",
        "state_dict",
    ]
    assert "rearm" in protocol_members(DriftDetector)
    assert "highwater" in protocol_members(Source) and "close" in protocol_members(Source)


def test_a_user_detector_function_is_built_for_each_expert() -> None:
    monitor = DriftMonitor(DriftSettings(detector="tests.support.plugins:sensitive_cusum"))
    first, second = monitor.detector("a"), monitor.detector("b")
    assert isinstance(first, Cusum) and first is not second
    assert first.k == 0.25
    assert missing_members(first, DriftDetector) == []


def test_a_user_detector_feeds_the_engine_events_under_its_name() -> None:
    spec = "tests.support.plugins:sensitive_cusum"
    engine = Engine(
        ModelSettings(hidden=[8], max_classes=4, learning_rate=0.01),
        EngineSettings(),
        DriftSettings(detector=spec, warmup=200, refractory=50, false_alarms_per_100k=100),
        ExpertsSettings(enabled=False),
    )
    x, y = blobs(0, 1_500)
    learn(engine, x, y)
    events = []
    for start in range(0, 600, 32):  # every label moves: the loss jumps
        rows, labels = x[start : start + 32].tolist(), ((y[start : start + 32] + 1) % 4).tolist()
        result = engine.process([Sample(r, int(c)) for r, c in zip(rows, labels, strict=True)])
        events += result.drift_events
    assert [e.detector for e in events if e.kind == "drift"][:1] == [spec]
    assert engine.drift is not None and engine.drift.state_dict()["detector"] == spec


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("tests.support.no_such_module:X", r"drift\.detector: cannot import 'tests\.support\.no"),
        ("tests.support.plugins:Nothing", r"drift\.detector: module .* has no 'Nothing'"),
        ("tests.support.plugins:NOT_CALLABLE", r"drift\.detector: .* is not a class or function"),
        (
            "tests.support.plugins:NoRearm",
            r"drift\.detector: it built a NoRearm, which lacks rearm",
        ),
    ],
)
def test_a_broken_user_detector_stops_the_monitor_at_start(spec: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        DriftMonitor(DriftSettings(detector=spec))


def test_a_user_detector_that_raises_when_built_is_named() -> None:
    settings = DriftSettings(detector="tests.support.plugins:sensitive_cusum", warmup=100)
    with pytest.raises(SettingsError, match=r"drift\.detector: sensitive_cusum\(...\) raised"):
        DriftMonitor(settings)  # k=0.25 cannot promise the rate in a 100-value warm-up


def test_the_missing_member_is_named_with_what_it_is_for() -> None:
    with pytest.raises(SettingsError) as raised:
        DriftMonitor(DriftSettings(detector="tests.support.plugins:NoRearm"))
    assert "rearm: The expert behind the values changed" in str(raised.value)


def test_a_user_adaptation_method_adapts_through_the_engine() -> None:
    spec = "tests.support.plugins:StatsOnly"
    engine = Engine(
        ModelSettings(hidden=[16], norm="batch", max_classes=4, seed=0),
        EngineSettings(),
        # The miscalibrated rows are an input shift: its restart would drop the first batch.
        DriftSettings(enabled=False, input_shift={"enabled": False}),
        ExpertsSettings(enabled=False),
        AdaptSettings(method=spec, batch_size=32),
    )
    x, y = blobs(0, 256)
    learn(engine, x, y)
    rows = miscalibrated(blobs(1, 64)[0]).tolist()
    steps = [
        engine.process([Sample(r, None) for r in rows[i : i + 32]]).adapt.steps for i in (0, 32)
    ]
    assert engine.adapt_method == spec and steps == [1, 1]
    assert engine.adapter is not None
    method = engine.adapter.experts["0"].method
    assert isinstance(method, StatsOnly) and method.steps == 2


@pytest.mark.parametrize(
    "spec, problem",
    [
        ("tests.support.plugins:NoStep", r"adapt\.method: it built a NoStep, which lacks step"),
        ("tests.support.plugins:Absent", r"adapt\.method: module .* has no 'Absent'"),
    ],
)
def test_a_broken_user_method_stops_the_adapter_when_it_is_made(spec: str, problem: str) -> None:
    with pytest.raises(SettingsError, match=problem):
        Adapter(AdaptSettings(method=spec), spec, seed=0)


def test_an_expert_without_the_accessors_fails_when_it_is_built() -> None:
    settings = ModelSettings(factory="tests.support.plugins:unaccessible")
    with pytest.raises(ModelError) as raised:
        build_expert(settings, 4, torch.device("cpu"))
    message = str(raised.value)
    assert "model.factory: it built a Unaccessible, which lacks module, skipped" in message
    assert "module: The network test-time adaptation and frozen serving work on" in message
    assert "skipped: Why the last learn step was skipped" in message
    assert "return a torch.nn.Module" in message


def test_model_factory_errors_name_their_setting() -> None:
    with pytest.raises(ModelError, match=r"model\.factory: expected 'package\.module:name'"):
        load_object("no_colon", "model.factory", ModelError)


def test_built_in_detectors_are_base_detectors_under_the_protocol() -> None:
    for name in DETECTOR_NAMES:
        built = DETECTORS[name](DriftSettings(detector=name))
        assert isinstance(built, BaseDetector) and missing_members(built, DriftDetector) == []
