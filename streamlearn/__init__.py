"""streamlearn: a daemon that learns online from non-stationary Kafka streams.

The names in ``__all__`` are the public API: what embedding or extending streamlearn needs.
They are imported on first use, not here: ``import streamlearn`` must stay free of torch,
because the service's supervisor imports this package and never learns or serves.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it (tests/unit/test_public_api.py pins the list).
_EXPORTS = {
    "BatchDriftDetector": "streamlearn.protocols",
    "BrokerError": "streamlearn.errors",
    "CheckpointError": "streamlearn.errors",
    "CheckpointStore": "streamlearn.protocols",
    "Codec": "streamlearn.codecs",
    "CodecError": "streamlearn.errors",
    "Daemon": "streamlearn.daemon",
    "DeadLetter": "streamlearn.types",
    "DriftDetector": "streamlearn.protocols",
    "DriftSignal": "streamlearn.types",
    "Engine": "streamlearn.engine",
    "Expert": "streamlearn.protocols",
    "ModelError": "streamlearn.errors",
    "Prediction": "streamlearn.types",
    "Record": "streamlearn.types",
    "RequestError": "streamlearn.errors",
    "Sample": "streamlearn.types",
    "Service": "streamlearn.service",
    "Settings": "streamlearn.settings",
    "SettingsError": "streamlearn.errors",
    "Sink": "streamlearn.protocols",
    "Source": "streamlearn.protocols",
    "SourceError": "streamlearn.errors",
    "StateDict": "streamlearn.protocols",
    "StreamlearnError": "streamlearn.errors",
    "TopicPartition": "streamlearn.types",
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
    "StreamlearnError",
    "TopicPartition",
    "__version__",
    "kafka_daemon",
    "load_settings",
]

if TYPE_CHECKING:
    from streamlearn.codecs import Codec
    from streamlearn.daemon import Daemon, kafka_daemon
    from streamlearn.engine import Engine
    from streamlearn.errors import (
        BrokerError,
        CheckpointError,
        CodecError,
        ModelError,
        RequestError,
        SettingsError,
        SourceError,
        StreamlearnError,
    )
    from streamlearn.protocols import (
        BatchDriftDetector,
        CheckpointStore,
        DriftDetector,
        Expert,
        Sink,
        Source,
        StateDict,
    )
    from streamlearn.service import Service
    from streamlearn.settings import Settings, load_settings
    from streamlearn.types import (
        DeadLetter,
        DriftSignal,
        Prediction,
        Record,
        Sample,
        TopicPartition,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'streamlearn' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
