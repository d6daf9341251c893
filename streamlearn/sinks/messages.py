"""The wire form of everything streamlearn publishes (documented in docs/api.md)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from streamlearn.core.types import DeadLetter, Prediction


def prediction_message(item: Prediction) -> bytes:
    message: dict[str, Any] = {
        "id": item.id,
        "prediction": item.prediction,
        "probabilities": item.probabilities,
        "model_version": item.model_version,
        "expert": item.expert,
    }
    if item.variance is not None:  # only where the head gives one: a Kalman head's
        message["variance"] = item.variance
    return json.dumps(message).encode()


def dead_letter_headers(item: DeadLetter) -> list[tuple[str, bytes]]:
    headers = [
        ("reason", item.reason.encode()),
        ("detail", item.detail.encode()[:1000]),
        ("source_topic", item.source.topic.encode()),
        ("source_partition", str(item.source.partition).encode()),
        ("source_offset", str(item.source.offset).encode()),
    ]
    if item.sample_index is not None:
        headers.append(("sample_index", str(item.sample_index).encode()))
    return headers


def event_message(kind: str, payload: Mapping[str, Any]) -> bytes:
    return json.dumps({"kind": kind, "time": time.time(), **payload}, default=str).encode()
