"""Samples now, their labels later: the late-label producer of the kill test.

Sample ``i`` goes to key ``i % keys``; 95% of them are ``{x: [key, seq], id}`` (unlabeled,
a per-key ``seq`` from 1, as tests/support/seqlineage.py reads it) and get a label
``{id, y: seq}`` on the labels topic after a random delay (some negative: the label comes
first); 5% are decoys (``x = [-1, -1]``) that are never labeled. Both topics are keyed to
partition ``key % partitions``. A key's labels are sent in seq order (a label's time is at
least its key's previous label's), so the joins of a key complete in seq order and the
lineage expert sees each key's seqs as 1, 2, 3, ... The delay is drawn per key and 2 s
block of sample time, so labels keep their drawn delay (a negative one: before the sample)
except where a block's delay is shorter than the last.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field

from kafka import KafkaProducer

from tests.support.background import Background


@dataclass
class LateLabelProducer:
    bootstrap: str
    samples_topic: str
    labels_topic: str
    keys: int
    partitions: int
    samples: int
    per_second: float
    delay_s: tuple[float, float] = (-0.3, 3.0)
    never_labeled: float = 0.05
    seed: int = 21
    last_seq: dict[int, int] = field(default_factory=dict)
    decoys: list[str] = field(default_factory=list)
    _background: Background = field(default_factory=Background)

    def __post_init__(self) -> None:
        self._events = self._schedule()
        self._producer = KafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=5)

    def _schedule(self) -> list[tuple[float, str, int, bytes]]:
        rng = random.Random(self.seed)
        events: list[tuple[float, str, int, bytes]] = []
        label_at: dict[int, float] = {}
        delay: dict[tuple[int, int], float] = {}
        for i in range(self.samples):
            at, key = i / self.per_second, i % self.keys
            partition = key % self.partitions
            if rng.random() < self.never_labeled:
                ident = f"d{i}"
                self.decoys.append(ident)
                value = {"x": [-1.0, -1.0], "id": ident}
                events.append((at, self.samples_topic, partition, json.dumps(value).encode()))
                continue
            seq = self.last_seq.get(key, 0) + 1
            self.last_seq[key] = seq
            ident = f"k{key}-{seq}"
            sample = {"x": [key, seq], "id": ident}
            events.append((at, self.samples_topic, partition, json.dumps(sample).encode()))
            # One delay per key and 2 s block: a running max over a fresh draw per label
            # would push nearly every label to the longest delay, and none would come first.
            block = (key, int(at // 2.0))
            if block not in delay:
                delay[block] = rng.uniform(*self.delay_s)
            when = max(label_at.get(key, 0.0), at + delay[block])
            label_at[key] = when
            label = {"id": ident, "y": seq}
            events.append((when, self.labels_topic, partition, json.dumps(label).encode()))
        # Stable: a key's label events keep their order when two share a time.
        return sorted(events, key=lambda e: e[0])

    def start(self) -> None:
        stop = self._background.stop

        def run() -> None:
            began = time.monotonic()
            for at, topic, partition, value in self._events:
                if stop.is_set():
                    return
                ahead = began + max(at, 0.0) - time.monotonic()
                if ahead > 0:
                    self._producer.flush()
                    stop.wait(ahead)
                self._producer.send(topic, value=value, partition=partition)
            self._producer.flush()

        self._background.launch(run, "late-producer")

    def join(self, timeout: float = 120.0) -> None:
        self._background.join(timeout)

    def close(self) -> None:
        self._background.halt(5)
        self._producer.close(timeout=5)
