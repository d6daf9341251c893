"""``streamlearn demo``: embedded broker, a drifting stream, the daemon, live progress.

Three threads: the producer sends the stream at a steady rate, the daemon learns it, and
this (main) thread draws progress and keeps a per-segment record of accuracy and drifts, so
the summary shows each concept change: accuracy dips at the change, the drift detector
fires, and accuracy recovers as the model relearns.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from streamlearn.daemon import Daemon, Progress, kafka_daemon
from streamlearn.embedded import EmbeddedBroker, create_topics
from streamlearn.errors import SettingsError
from streamlearn.logging import configure_logging
from streamlearn.producer import produce
from streamlearn.settings import Settings, load_settings
from streamlearn.streams import STREAMS, drifting_stream

_UNLABELED_SHARE = 0.02  # some traffic without labels: predicted and published
_BAD_SHARE = 0.001  # some broken records: dead-lettered, counted, never a crash
_TICK_S = 0.25
_SEED = 7  # which records become unlabeled or broken: fixed, so every demo run is alike


@dataclass
class _Segment:
    concept: str
    end_accuracy: float = float("nan")
    min_accuracy: float = float("nan")
    drifts: int = 0
    expert: str = "-"  # the expert active at the segment's end


@dataclass
class _Tracker:
    segment: int
    concepts: tuple[int, ...]
    stream: str
    segments: list[_Segment] = field(default_factory=list)
    drifts_seen: int = 0

    def observe(self, p: Progress) -> None:
        done = p.samples_learned + p.samples_predicted + p.records_invalid
        index = done // self.segment
        while len(self.segments) <= index:
            concept = self.concepts[len(self.segments) % len(self.concepts)]
            self.segments.append(_Segment(f"{self.stream}-{concept}"))
        seg = self.segments[index]
        seg.drifts += p.drifts - self.drifts_seen  # detected during this segment
        self.drifts_seen = p.drifts
        seg.expert = p.active_expert or "-"
        if p.accuracy == p.accuracy:  # not NaN
            seg.end_accuracy = p.accuracy
            seg.min_accuracy = min(p.accuracy, seg.min_accuracy) \
                if seg.min_accuracy == seg.min_accuracy else p.accuracy


def run_demo(args: argparse.Namespace, install_signals: Callable[[Callable[[], None]], None]
             ) -> int:
    if args.stream not in STREAMS:
        raise SettingsError([f"--stream: unknown {args.stream!r}; allowed: "
                             f"{', '.join(STREAMS)}"])
    configure_logging("error")
    console = Console()
    stop = threading.Event()
    install_signals(stop.set)
    rate = args.rate or max(100.0, args.samples / (args.duration * 0.9))
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ckpt_dir = args.checkpoint_dir or Path(tmp) / "checkpoints"
        settings = _settings(broker.bootstrap, ckpt_dir)
        # One input partition: the stream's order is its time. Over two, the learner reads
        # them at different paces and sees the regimes interleaved around every change.
        create_topics(broker.bootstrap, {settings.kafka.input_topic: 1,
                                         settings.kafka.predictions_topic: 1,
                                         settings.kafka.events_topic: 1,
                                         settings.kafka.dlq_topic: 1})
        daemon = kafka_daemon(settings)
        port, _ = daemon.metrics.serve("127.0.0.1", 0)
        console.print(f"[bold]streamlearn demo[/]: broker {broker.bootstrap}, stream "
                      f"{args.stream!r} ({STREAMS[args.stream].description}), "
                      f"{args.samples} samples at {rate:.0f}/s, concept change every "
                      f"{args.segment}; metrics at http://127.0.0.1:{port}/metrics")
        sent = {"n": 0, "done": False}
        producer = threading.Thread(target=_produce, daemon=True, args=(
            broker.bootstrap, settings.kafka.input_topic, args, rate, sent, stop))
        learner = threading.Thread(target=daemon.run, name="learner", daemon=True)
        producer.start()
        learner.start()
        tracker = _Tracker(args.segment, STREAMS[args.stream].concepts, args.stream)
        began = time.monotonic()
        _watch(console, daemon, tracker, sent, stop, began, args.duration)
        daemon.request_stop()
        stop.set()
        learner.join(timeout=15)
        producer.join(timeout=5)
        _summary(console, daemon, tracker, sent["n"], time.monotonic() - began, ckpt_dir,
                 keep=args.checkpoint_dir is not None)
    return 0


def _settings(bootstrap: str, ckpt_dir: Path) -> Settings:
    return load_settings(
        None,
        kafka={"bootstrap_servers": bootstrap, "group_id": "streamlearn-demo",
               "session_timeout_ms": 6000, "heartbeat_interval_ms": 1000},
        engine={"max_batch": 32, "max_wait_ms": 20},
        model={"hidden": [64, 64], "learning_rate": 0.003},
        checkpoint={"dir": str(ckpt_dir), "every_samples": 10_000, "every_seconds": 10.0},
        log={"level": "error"},
    )


def _records(args: argparse.Namespace) -> Iterator[bytes]:
    rng = random.Random(_SEED)
    for sample in drifting_stream(args.stream, args.samples, 42, args.segment):
        roll = rng.random()
        if roll < _BAD_SHARE:
            yield b'{"x": "not a list of numbers", "y": 1}'
            continue
        if roll < _BAD_SHARE + _UNLABELED_SHARE:
            sample.pop("y")
        yield json.dumps(sample).encode()


def _produce(bootstrap: str, topic: str, args: argparse.Namespace, rate: float,
             sent: dict[str, Any], stop: threading.Event) -> None:
    produce(bootstrap, topic, _records(args), rate,
            on_sent=lambda n: sent.__setitem__("n", n), stop=stop)
    sent["done"] = True


def _watch(console: Console, daemon: Daemon, tracker: _Tracker, sent: dict[str, Any],
           stop: threading.Event, began: float, duration: float) -> None:
    def finished() -> bool:
        p = daemon.progress
        caught_up = sent["done"] and p.records_consumed >= sent["n"] and p.lag == 0
        return stop.is_set() or time.monotonic() - began >= duration or caught_up

    if console.is_terminal:
        with Live(console=console, refresh_per_second=4) as live:
            while not finished():
                tracker.observe(daemon.progress)
                live.update(_table(daemon.progress, sent["n"], time.monotonic() - began))
                time.sleep(_TICK_S)
        return
    last_line = 0.0
    while not finished():
        tracker.observe(daemon.progress)
        if time.monotonic() - last_line >= 5:
            last_line = time.monotonic()
            console.print(_line(daemon.progress, sent["n"], time.monotonic() - began))
        time.sleep(_TICK_S)


def _table(p: Progress, sent: int, elapsed: float) -> Table:
    table = Table(title="streamlearn: learning live", show_header=False)
    for key, value in _fields(p, sent, elapsed):
        table.add_row(key, value)
    return table


def _line(p: Progress, sent: int, elapsed: float) -> str:
    return "  ".join(f"{k}={v}" for k, v in _fields(p, sent, elapsed))


def _fields(p: Progress, sent: int, elapsed: float) -> list[tuple[str, str]]:
    return [
        ("elapsed", f"{elapsed:5.1f}s"), ("produced", str(sent)),
        ("learned", str(p.samples_learned)),
        ("rate", f"{p.samples_learned / max(elapsed, 1e-9):,.0f}/s"),
        ("accuracy(last 1k)", f"{p.accuracy:.3f}"), ("loss(last 1k)", f"{p.loss:.3f}"),
        ("predicted(unlabeled)", str(p.samples_predicted)),
        ("adapted(unlabeled)", f"{p.adapted} ({p.adapt_method}, {p.adapt_resets} guard "
                               "resets)"),
        ("dead-lettered", str(p.records_invalid)), ("checkpoints", str(p.checkpoints)),
        ("lag", str(p.lag)), ("paused", "yes" if p.paused else "no"),
        ("drifts detected", f"{p.drifts}" + (f" (last at sample {p.last_drift_sample})"
                                             if p.drifts else "")),
        ("experts", f"{p.experts} (active {p.active_expert}; {p.spawns} spawned, "
                    f"{p.switches} reused)"),
    ]


def _summary(console: Console, daemon: Daemon, tracker: _Tracker, sent: int, elapsed: float,
             ckpt_dir: Path, keep: bool) -> None:
    p = daemon.progress
    stats = daemon.engine.stats
    console.print(f"\n[bold]summary[/]: {sent} records sent, {p.samples_learned} samples "
                  f"learned in {elapsed:.1f}s ({p.samples_learned / max(elapsed, 1e-9):,.0f}/s),"
                  f" prequential accuracy {stats.cumulative('correct'):.3f} overall, "
                  f"{p.samples_predicted} unlabeled predicted ({p.adapted} adapted on by "
                  f"{p.adapt_method}, {p.adapt_resets} guard resets), {p.records_invalid} "
                  f"dead-lettered, {p.checkpoints} checkpoints")
    table = Table(title="accuracy per concept segment (rolling window of 1000)")
    for column in ("segment", "concept", "lowest", "at end", "drifts detected", "expert"):
        table.add_column(column)
    for index, seg in enumerate(tracker.segments):
        table.add_row(str(index), seg.concept, f"{seg.min_accuracy:.3f}",
                      f"{seg.end_accuracy:.3f}", str(seg.drifts), seg.expert)
    console.print(table)
    if keep:
        console.print(f"checkpoints kept in {ckpt_dir}: streamlearn checkpoint inspect "
                      f"{ckpt_dir}")
