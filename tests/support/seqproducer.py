"""The sequence producer of RELIABILITY.md: K keys, each record's samples ``{x: [key, seq], y}``
with a per-key ``seq`` from 1, keyed to partition ``key % partitions`` (Kafka orders records
within a partition only, so each key's seqs arrive in order).

``per_record`` > 1 sends batch records (``{"samples": [...]}``) of that many consecutive
seqs of one key: one offset, many samples (kafka-python produces some 35k records/s here,
so 100k samples go as batch records to keep a test short). ``unlabeled_every`` = n makes
every n-th record an unlabeled one (no ``y``, ``id`` ``u<n>``) beside the labeled ones:
its prediction must reach the predictions topic; unlabeled records take no seq.

:meth:`start` produces in a background thread at a steady pace while a test kills and
restarts the daemon, :meth:`send` all at once.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from kafka import KafkaProducer

from tests.support.background import Background


@dataclass
class SequenceProducer:
    bootstrap: str
    topic: str
    keys: int
    partitions: int
    per_record: int = 1
    unlabeled_every: int = 0
    # Write only these partitions (None: all): keys of the others are skipped.
    only: frozenset[int] | None = None
    next_seq: dict[int, int] = field(default_factory=dict)
    unlabeled_ids: list[str] = field(default_factory=list)
    records_sent: int = 0
    # (key, first seq) of each labeled record -> (partition, offset): one producer writes
    # each partition in order, so the offset is the count sent to it before.
    placed: dict[tuple[int, int], tuple[int, int]] = field(default_factory=dict)
    _sent_to: dict[int, int] = field(default_factory=dict)
    _key: int = 0
    _background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        self.next_seq = {k: 1 for k in range(self.keys)}
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)

    # -- what was sent --------------------------------------------------------------------

    def expected(self) -> dict[int, int]:
        """The last seq sent for each key (a key with none sent is left out)."""
        return {k: s - 1 for k, s in self.next_seq.items() if s > 1}

    def offset_of(self, key: int, seq: int) -> tuple[int, int]:
        """(partition, offset) of the record that carried ``seq`` of ``key``."""
        first = seq - (seq - 1) % self.per_record
        return self.placed[(key, first)]

    def sent_to(self) -> dict[int, int]:
        """Records sent to each partition (= its end offset, one producer writing it)."""
        return dict(self._sent_to)

    @property
    def samples_sent(self) -> int:
        return sum(self.expected().values())

    # -- producing ------------------------------------------------------------------------

    def _next_record(self) -> tuple[int, bytes]:
        self.records_sent += 1
        if self.unlabeled_every and self.records_sent % self.unlabeled_every == 0:
            ident = f"u{len(self.unlabeled_ids)}"
            self.unlabeled_ids.append(ident)
            # Unlabeled: x is never a (key, seq) pair a learner could confuse with one.
            partition = len(self.unlabeled_ids) % self.partitions
            self._sent_to[partition] = self._sent_to.get(partition, 0) + 1
            return partition, json.dumps({"x": [-1.0, -1.0], "id": ident}).encode()
        if self.only is not None:
            assert any(k % self.partitions in self.only for k in range(self.keys)), self.only
        while self.only is not None and self._key % self.partitions not in self.only:
            self._key = (self._key + 1) % self.keys
        key = self._key
        self._key = (self._key + 1) % self.keys
        first = self.next_seq[key]
        self.next_seq[key] = first + self.per_record
        samples = [{"x": [key, seq], "y": seq} for seq in range(first, first + self.per_record)]
        value = samples[0] if self.per_record == 1 else {"samples": samples}
        partition = key % self.partitions
        self.placed[(key, first)] = (partition, self._sent_to.get(partition, 0))
        self._sent_to[partition] = self._sent_to.get(partition, 0) + 1
        return partition, json.dumps(value).encode()

    def send(self, records: int) -> None:
        """``records`` more records, then wait until they all landed."""
        for _ in range(records):
            partition, value = self._next_record()
            self._producer.send(self.topic, value=value, partition=partition)
        self._producer.flush()

    def start(self, records: int, per_second: float, chunk: int = 20) -> None:
        """Produce ``records`` more in the background, ``per_second`` on average."""

        stop = self._background.stop

        def run() -> None:
            began, done = time.monotonic(), 0
            while done < records and not stop.is_set():
                n = min(chunk, records - done)
                self.send(n)
                done += n
                ahead = began + done / per_second - time.monotonic()
                if ahead > 0:
                    stop.wait(ahead)

        self._background.launch(run, "seq-producer")

    @property
    def running(self) -> bool:
        return self._background.running

    def join(self, timeout: float = 120.0) -> None:
        self._background.join(timeout)

    def close(self) -> None:
        self._background.halt()
        self._producer.close()
