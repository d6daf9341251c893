"""Send records to a topic at a bounded rate (``streamlearn produce`` and the demo)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from streamlearn.errors import StreamlearnError


def json_lines(path: Path) -> Iterator[bytes]:
    """Each non-empty line of a JSON-lines file, as bytes; lines are sent as they are."""
    try:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield line.rstrip(b"\r\n")
    except OSError as exc:
        raise StreamlearnError(f"{path}: cannot read ({exc.strerror})") from None


def encode_samples(samples: Iterable[dict[str, Any]], per_record: int = 1) -> Iterator[bytes]:
    """Samples as records; ``per_record > 1`` packs them into batch records."""
    if per_record <= 1:
        for sample in samples:
            yield json.dumps(sample).encode()
        return
    chunk: list[dict[str, Any]] = []
    for sample in samples:
        chunk.append(sample)
        if len(chunk) == per_record:
            yield json.dumps({"samples": chunk}).encode()
            chunk = []
    if chunk:
        yield json.dumps({"samples": chunk}).encode()


def produce(bootstrap: str, topic: str, records: Iterable[bytes], rate: float | None = None,
            on_sent: Callable[[int], None] | None = None,
            stop: threading.Event | None = None) -> int:
    """Send every record (round-robin over partitions); ``rate`` caps records per second."""
    producer = KafkaProducer(bootstrap_servers=bootstrap.split(","), linger_ms=10,
                             batch_size=256 * 1024, acks=1)
    sent = 0
    started = time.monotonic()
    try:
        for value in records:
            if stop is not None and stop.is_set():
                break
            producer.send(topic, value=value)
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if on_sent is not None and sent % 100 == 0:
                on_sent(sent)
        producer.flush()
    finally:
        producer.close(timeout=5)
    if on_sent is not None:
        on_sent(sent)
    return sent
