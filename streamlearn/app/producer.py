"""Send records to a topic at a bounded rate (``streamlearn produce`` and the demo)."""

from __future__ import annotations

import json
import string
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamlearn.core.errors import SettingsError, StreamlearnError
from streamlearn.sources.connect import closing_on_failure

# One try, where the daemon retries its 2 s tries: a little longer, for a distant or busy
# broker, and still a wrong address is said within seconds, not after kafka-python's 30 s.
BOOTSTRAP_TIMEOUT_MS = 3_000
#: A record's Kafka key from its 1-based position and its bytes.
KeyOf = Callable[[int, bytes], bytes]
#: Where a record came from, for an error: "record 7", "in.jsonl line 9".
Where = Callable[[int], str]


class JsonLines:
    """Each non-empty line of a JSON-lines file, as bytes (sent as they are); ``line`` is
    the number of the line last yielded, for errors that name it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.line = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as handle:
                for self.line, text in enumerate(handle, 1):
                    if text.strip():
                        yield text.rstrip(b"\r\n")
        except OSError as exc:
            raise StreamlearnError(f"{self.path}: cannot read ({exc.strerror})") from None

    def where(self, index: int) -> str:
        return f"{self.path} line {self.line}"


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


def record_number(index: int) -> str:
    return f"record {index}"


def key_of_field(name: str, where: Where = record_number) -> KeyOf:
    """The value of the record's field ``name`` as its key: a string as it is, anything else
    as JSON text (``17``, ``true``)."""

    def key(index: int, value: bytes) -> bytes:
        fields = _fields(value, index, where, f"--key {name}")
        if fields.get(name) is None:
            state = "is null" if name in fields else "is missing"
            raise StreamlearnError(
                f"{where(index)}: field {name!r} {state}; --key {name} "
                f"keys each record by it (fields: {_names(fields)})"
            )
        field = fields[name]
        return (field if isinstance(field, str) else json.dumps(field)).encode()

    return key


def key_of_template(template: str, where: Where = record_number) -> KeyOf:
    """``template.format(**record)`` as the key (Python format syntax: ``{source}-{id}``)."""
    _check_template(template)
    option = f"--key-template {template!r}"

    def key(index: int, value: bytes) -> bytes:
        fields = _fields(value, index, where, option)
        try:
            return template.format_map(fields).encode()
        except KeyError as exc:
            raise StreamlearnError(
                f"{where(index)}: field {exc.args[0]!r} is missing for "
                f"{option} (fields: {_names(fields)})"
            ) from None
        except (ValueError, TypeError) as exc:  # a format spec the value does not take
            raise StreamlearnError(f"{where(index)}: {option}: {exc}") from None

    return key


def _check_template(template: str) -> None:
    """Named fields only, at least one: ``{0}``, ``{}``, ``{a.b}`` or ``{a[0]}`` would
    read something other than a field of the record."""
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise SettingsError([f"--key-template {template!r}: {exc}"]) from None
    bad = [n for n in names if not n or n.isdigit() or any(c in n for c in ".[")]
    if not names or bad:
        raise SettingsError(
            [
                f"--key-template {template!r}: name the record's fields in "
                "braces, e.g. '{source}-{id}'"
            ]
        )


def _fields(value: bytes, index: int, where: Where, option: str) -> dict[str, Any]:
    try:
        fields = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        fields = None
    if not isinstance(fields, dict):
        raise StreamlearnError(
            f"{where(index)}: not a JSON object, so {option} has no field to key it by"
        )
    return fields


def _names(fields: dict[str, Any]) -> str:
    names = ", ".join(sorted(fields))
    return names if len(names) <= 80 else names[:80] + "..."


def connect(bootstrap: str) -> KafkaProducer:
    """A producer to ``bootstrap`` (comma-separated host:port); an unreachable broker is
    one line naming it, within BOOTSTRAP_TIMEOUT_MS, and leaks no half-built client."""
    try:
        with closing_on_failure() as client_factory:
            return KafkaProducer(
                bootstrap_servers=bootstrap.split(","),
                linger_ms=10,
                batch_size=256 * 1024,
                acks=1,
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
                kafka_client=client_factory,
            )
    except KafkaError as exc:
        raise StreamlearnError(
            f"cannot reach a Kafka broker at {bootstrap} within "
            f"{BOOTSTRAP_TIMEOUT_MS / 1000:g} s "
            f"({type(exc).__name__})"
        ) from None


def send_all(
    producer: KafkaProducer,
    topic: str,
    records: Iterable[bytes],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    key: KeyOf | None = None,
) -> int:
    """Send every record (keyed by ``key``, else round-robin over partitions); ``rate``
    caps records per second. Closes ``producer``."""
    sent = 0
    started = time.monotonic()
    try:
        for value in records:
            if stop is not None and stop.is_set():
                break
            producer.send(topic, value=value, key=None if key is None else key(sent + 1, value))
            sent += 1
            if rate:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
            if on_sent is not None and sent % 100 == 0:
                on_sent(sent)
        producer.flush()
    except KafkaError as exc:
        servers = ",".join(producer.config["bootstrap_servers"])
        raise StreamlearnError(f"sending to {topic} at {servers}: {exc}") from None
    finally:
        producer.close(timeout=5)
    if on_sent is not None:
        on_sent(sent)
    return sent


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[bytes],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    key: KeyOf | None = None,
) -> int:
    """Connect, then :func:`send_all`."""
    return send_all(connect(bootstrap), topic, records, rate, on_sent, stop, key)
