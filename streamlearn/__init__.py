"""streamlearn: a daemon that learns online from non-stationary Kafka streams.

The names in ``__all__`` are the public API: what embedding or extending streamlearn needs.
They are imported on first use, not here: ``import streamlearn`` must stay free of torch,
because the service's supervisor imports this package and never learns or serves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from streamlearn._version import __version__

# Public name -> the module that defines it (tests/unit/test_public_api.py pins the list).
_EXPORTS = {
    "BatchDriftDetector": "streamlearn.core.protocols",
    "BrokerError": "streamlearn.core.errors",
    "CheckpointError": "streamlearn.core.errors",
    "CheckpointStore": "streamlearn.core.protocols",
    "Codec": "streamlearn.core.codecs",
    "CodecError": "streamlearn.core.errors",
    "Daemon": "streamlearn.daemon",
    "DeadLetter": "streamlearn.core.types",
    "DriftDetector": "streamlearn.core.protocols",
    "DriftSignal": "streamlearn.core.types",
    "Engine": "streamlearn.core.engine",
    "Expert": "streamlearn.core.protocols",
    "ModelError": "streamlearn.core.errors",
    "Prediction": "streamlearn.core.types",
    "Record": "streamlearn.core.types",
    "RequestError": "streamlearn.core.errors",
    "Sample": "streamlearn.core.types",
    "Service": "streamlearn.app.service",
    "Settings": "streamlearn.settings",
    "SettingsError": "streamlearn.core.errors",
    "Sink": "streamlearn.core.protocols",
    "Source": "streamlearn.core.protocols",
    "StepScaling": "streamlearn.core.protocols",
    "SourceError": "streamlearn.core.errors",
    "StateDict": "streamlearn.core.protocols",
    "StreamlearnError": "streamlearn.core.errors",
    "TopicPartition": "streamlearn.core.types",
    "WarmStarted": "streamlearn.core.protocols",
    "kafka_daemon": "streamlearn.daemon",
    "load_settings": "streamlearn.settings",
}

__all__ = [
    "BatchDriftDetector",
    "BrokerError",
    "CheckpointError",
    "CheckpointStore",
    "Codec",
    "CodecError",
    "Daemon",
    "DeadLetter",
    "DriftDetector",
    "DriftSignal",
    "Engine",
    "Expert",
    "ModelError",
    "Prediction",
    "Record",
    "RequestError",
    "Sample",
    "Service",
    "Settings",
    "SettingsError",
    "Sink",
    "Source",
    "SourceError",
    "StateDict",
    "StepScaling",
    "StreamlearnError",
    "TopicPartition",
    "WarmStarted",
    "__version__",
    "kafka_daemon",
    "load_settings",
]

if TYPE_CHECKING:
    from streamlearn.app.service import Service
    from streamlearn.core.codecs import Codec
    from streamlearn.core.engine import Engine
    from streamlearn.core.errors import (
        BrokerError,
        CheckpointError,
        CodecError,
        ModelError,
        RequestError,
        SettingsError,
        SourceError,
        StreamlearnError,
    )
    from streamlearn.core.protocols import (
        BatchDriftDetector,
        CheckpointStore,
        DriftDetector,
        Expert,
        Sink,
        Source,
        StateDict,
        StepScaling,
        WarmStarted,
    )
    from streamlearn.core.types import (
        DeadLetter,
        DriftSignal,
        Prediction,
        Record,
        Sample,
        TopicPartition,
    )
    from streamlearn.daemon import Daemon, kafka_daemon
    from streamlearn.settings import Settings, load_settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
