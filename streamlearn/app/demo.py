"""``streamlearn demo``: embedded broker, a drifting stream, the daemon serving while it
learns, live progress, and a PNG of the run.

Three threads: the producer sends the stream at a steady rate, the service serves HTTP and
gRPC and learns the stream, and this (main) thread draws progress and keeps a per-segment
record of accuracy and drifts, so the summary shows each concept change: accuracy dips at
the change, the drift detector fires, and accuracy recovers as the model relearns.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
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

from streamlearn.app.demo_labels import LateLabelFeed
from streamlearn.app.embedded import EmbeddedBroker, create_topics
from streamlearn.app.producer import produce
from streamlearn.app.service import Service
from streamlearn.core.errors import SettingsError
from streamlearn.core.logging import configure_logging
from streamlearn.daemon import Daemon, Progress, kafka_daemon
from streamlearn.settings import Settings, load_settings
from streamlearn.streams import STREAMS, drifting_stream

_UNLABELED_SHARE = 0.02  # some traffic without labels: predicted and published
_BAD_SHARE = 0.001  # some broken records: dead-lettered, counted, never a crash
_TICK_S = 0.25
_SEED = 7  # which records become unlabeled or broken: fixed, so every demo run is alike
_HOST = "127.0.0.1"  # the demo's servers are for this machine only
_PORTS = (8080, 8081)  # the daemon's defaults, so the docs' examples work as written
_PORTS_WAIT_S = 30.0


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
    accuracy: list[tuple[int, float]] = field(default_factory=list)  # (learned, rolling)

    def observe(self, p: Progress) -> None:
        done = p.samples_learned + p.samples_predicted + p.records_invalid
        index = max(done - 1, 0) // self.segment  # the segment of the latest record
        while len(self.segments) <= index:
            concept = self.concepts[len(self.segments) % len(self.concepts)]
            self.segments.append(_Segment(f"{self.stream}-{concept}"))
        seg = self.segments[index]
        seg.drifts += p.drifts - self.drifts_seen  # detected during this segment
        self.drifts_seen = p.drifts
        seg.expert = p.active_expert or "-"
        if p.accuracy == p.accuracy:  # not NaN
            seg.end_accuracy = p.accuracy
            seg.min_accuracy = (
                min(p.accuracy, seg.min_accuracy)
                if seg.min_accuracy == seg.min_accuracy
                else p.accuracy
            )
            if not self.accuracy or self.accuracy[-1][0] != p.samples_learned:
                self.accuracy.append((p.samples_learned, p.accuracy))


@dataclass(frozen=True)
class _Endpoints:
    http: str
    grpc: str | None
    infer_url: str
    body: str  # one real row of the stream, as a v2 infer request

    @property
    def curl(self) -> str:
        # -d alone would send a form content type, which the v2 endpoint refuses.
        return f"curl -s -H 'Content-Type: application/json' -d '{self.body}' {self.infer_url}"


def run_demo(
    args: argparse.Namespace, install_signals: Callable[[Callable[[], None]], None]
) -> int:
    if args.stream not in STREAMS:
        raise SettingsError([f"--stream: unknown {args.stream!r}; allowed: {', '.join(STREAMS)}"])
    configure_logging("error")
    console = Console()
    stop = threading.Event()
    install_signals(stop.set)
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        ckpt_dir = args.checkpoint_dir or Path(tmp) / "checkpoints"
        settings = _settings(broker.bootstrap, ckpt_dir, args.late_labels)
        # One input partition: the stream's order is its time. Over two, the learner reads
        # them at different paces and sees the regimes interleaved around every change.
        create_topics(
            broker.bootstrap,
            {
                settings.kafka.input_topic: 1,
                settings.kafka.predictions_topic: 1,
                settings.kafka.events_topic: 1,
                settings.kafka.dlq_topic: 1,
                settings.kafka.labels_topic: 1,
            },
        )
        _run(console, args, broker.bootstrap, settings, stop)
    return 0


def _run(
    console: Console,
    args: argparse.Namespace,
    bootstrap: str,
    settings: Settings,
    stop: threading.Event,
) -> None:
    rate = args.rate or max(100.0, args.samples / (args.duration * 0.9))
    daemon = kafka_daemon(settings)
    service = Service(daemon)
    server = threading.Thread(target=service.run, name="service", daemon=True)
    server.start()
    endpoints = _endpoints(service, settings, args)
    metrics_port, _ = daemon.metrics.serve(_HOST, 0)
    _header(console, args, bootstrap, rate, metrics_port, endpoints)
    sent = {"n": 0, "done": False}
    feed = LateLabelFeed(bootstrap, settings.kafka.labels_topic) if args.late_labels else None
    producer = threading.Thread(
        target=_produce,
        daemon=True,
        args=(bootstrap, settings.kafka.input_topic, args, rate, sent, stop, feed),
    )
    producer.start()
    if feed is not None:
        threading.Thread(target=feed.run, args=(stop,), name="late-labels", daemon=True).start()
    tracker = _Tracker(args.segment, STREAMS[args.stream].concepts, args.stream)
    began = time.monotonic()
    _watch(console, daemon, tracker, sent, stop, began, args.duration, endpoints)
    notes = [f"served while learning: {_listening(endpoints)}", _ask(endpoints)]  # still up
    service.request_stop()
    stop.set()
    server.join(timeout=60)  # a bound, not a wait: the final checkpoint is usually quick
    producer.join(timeout=5)
    tracker.observe(daemon.progress)
    if feed is not None:
        notes.append(_late_labels_note(daemon, feed))
    if args.plot is not None:
        notes.append(_plot(args, daemon, tracker))
    if args.checkpoint_dir is not None:
        notes.append(
            f"checkpoints kept in {args.checkpoint_dir}: streamlearn checkpoint "
            f"inspect {args.checkpoint_dir}"
        )
    _summary(console, daemon, tracker, sent["n"], time.monotonic() - began, notes)


def _late_labels_note(daemon: Daemon, feed: LateLabelFeed) -> str:
    served = daemon.late_labels.served
    accuracy = served.accuracy(served.windows[-1])
    shown = "n/a" if accuracy is None else f"{accuracy:.3f}"
    return (
        f"late labels (1-5 s after their sample): {feed.sent} sent, {served.joins} joined; "
        f"accuracy of the answers served, last {served.windows[-1]} joins: {shown}; "
        f"{len(daemon.late_labels.store.pending)} samples still waiting for a label"
    )


def _settings(bootstrap: str, ckpt_dir: Path, late_labels: bool = False) -> Settings:
    return load_settings(
        None,
        kafka={
            "bootstrap_servers": bootstrap,
            "group_id": "streamlearn-demo",
            "session_timeout_ms": 6000,
            "heartbeat_interval_ms": 1000,
        },
        # The learner at the shipped defaults (config/default.yaml): what a user gets.
        checkpoint={"dir": str(ckpt_dir), "every_samples": 10_000, "every_seconds": 10.0},
        # No load balancer to wait for: the drain may start at once.
        serve={
            "host": _HOST,
            "http_port": _free_or_any(_PORTS[0]),
            "grpc_port": _free_or_any(_PORTS[1]),
            "shutdown_delay_s": 0.0,
            "drain_timeout_s": 2.0,
        },
        log={"level": "error"},
        labels={"enabled": late_labels},
    )


def _free_or_any(port: int) -> int:
    """``port`` when nothing listens there, else 0 (the system picks a free one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((_HOST, port))
        except OSError:
            return 0
    return port


def _endpoints(service: Service, settings: Settings, args: argparse.Namespace) -> _Endpoints:
    # Servers in other processes may learn their ports only once started: wait for them.
    deadline = time.monotonic() + _PORTS_WAIT_S
    while not service.http_port and time.monotonic() < deadline:
        time.sleep(0.05)
    grpc = service.grpc_port
    row = next(drifting_stream(args.stream, 1, 42, args.segment))["x"]
    body = {
        "inputs": [
            {
                "name": settings.serve.input_name,
                "shape": [1, len(row)],
                "datatype": "FP32",
                "data": [round(v, 4) for v in row],
            }
        ]
    }
    http = f"http://{_HOST}:{service.http_port}"
    return _Endpoints(
        http,
        f"{_HOST}:{grpc}" if grpc else None,
        f"{http}/v2/models/{settings.serve.model_name}/infer",
        json.dumps(body, separators=(",", ":")),
    )


def _header(
    console: Console,
    args: argparse.Namespace,
    bootstrap: str,
    rate: float,
    metrics_port: int,
    endpoints: _Endpoints,
) -> None:
    console.print(
        f"[bold]streamlearn demo[/]: broker {bootstrap}, stream "
        f"{args.stream!r} ({STREAMS[args.stream].description}), "
        f"{args.samples} samples at {rate:.0f}/s, concept change every "
        f"{args.segment}; metrics at http://{_HOST}:{metrics_port}/metrics"
    )
    console.print(f"serving: {_listening(endpoints)}; while it runs, ask it:")
    # Unwrapped and without markup: the line must paste as one working command.
    console.print(endpoints.curl, soft_wrap=True, markup=False, highlight=False)


def _listening(endpoints: _Endpoints) -> str:
    grpc = f", gRPC at {endpoints.grpc}" if endpoints.grpc else ""
    return f"HTTP at {endpoints.http}{grpc}"


def _ask(endpoints: _Endpoints) -> str:
    """Send the header's curl request, to show it works; the answer, or why there is none."""
    try:
        import httpx
    except ModuleNotFoundError:
        return (
            "the curl request was not tried: httpx is not installed (pip install "
            "'streamlearn[demo]')"
        )
    try:
        answer = httpx.post(
            endpoints.infer_url,
            content=endpoints.body,
            timeout=5.0,
            headers={"Content-Type": "application/json"},
        )
    except httpx.HTTPError as exc:
        return f"the curl request failed: {exc!r}"
    if answer.status_code != 200:
        return f"the curl request was answered {answer.status_code}: {answer.text}"
    reply = answer.json()
    predictions = next((o["data"] for o in reply["outputs"] if o["name"] == "predictions"), None)
    return (
        f"the curl request was answered: predictions {predictions}, model version "
        f"{reply['model_version']}, expert {reply['parameters'].get('expert', '-')}"
    )


def _plot(args: argparse.Namespace, daemon: Daemon, tracker: _Tracker) -> str:
    from streamlearn.app.demo_plot import expert_spans, plot_run

    learned = daemon.progress.samples_learned
    drifts = [int(e["sample"]) for e in daemon.drift_history.recent(kind="drift")]
    spans = expert_spans(daemon.expert_history.recent(), learned)
    title = (
        f"streamlearn demo: {args.stream}, {learned} samples learned, prequential "
        f"accuracy {daemon.engine.stats.cumulative('correct'):.3f} overall"
    )
    try:
        path = plot_run(
            args.plot,
            title,
            tracker.accuracy,
            drifts,
            spans,
            [b for b in _boundaries(args) if b <= learned],
        )
    except ModuleNotFoundError as exc:
        return f"plot not written: {exc.name} is not installed (pip install 'streamlearn[demo]')"
    except Exception as exc:  # the picture is extra: the summary prints all the same
        return f"plot not written: {exc!r}"
    return f"plot of the run written to {path.resolve()}"


def _kind(rng: random.Random) -> str:
    roll = rng.random()
    if roll < _BAD_SHARE:
        return "bad"
    return "unlabeled" if roll < _BAD_SHARE + _UNLABELED_SHARE else "labeled"


def _records(args: argparse.Namespace) -> Iterator[bytes]:
    rng = random.Random(_SEED)
    for sample in drifting_stream(args.stream, args.samples, 42, args.segment):
        kind = _kind(rng)
        if kind == "bad":
            yield b'{"x": "not a list of numbers", "y": 1}'
            continue
        if kind == "unlabeled":
            sample.pop("y")
        yield json.dumps(sample).encode()


def _boundaries(args: argparse.Namespace) -> list[int]:
    """Where each concept change falls in samples learned: the plot's axis counts only
    labeled records, so the change at record 50,000 comes about 1,000 samples earlier."""
    rng = random.Random(_SEED)  # the same draws as _records
    labeled, found = 0, []
    for index in range(args.samples):
        if index and index % args.segment == 0:
            found.append(labeled)
        labeled += _kind(rng) == "labeled"
    return found


def _produce(
    bootstrap: str,
    topic: str,
    args: argparse.Namespace,
    rate: float,
    sent: dict[str, Any],
    stop: threading.Event,
    feed: LateLabelFeed | None = None,
) -> None:
    records = _records(args)
    produce(
        bootstrap,
        topic,
        feed.strip(records) if feed is not None else records,
        rate,
        on_sent=lambda n: sent.__setitem__("n", n),
        stop=stop,
    )
    sent["done"] = True


def _watch(
    console: Console,
    daemon: Daemon,
    tracker: _Tracker,
    sent: dict[str, Any],
    stop: threading.Event,
    began: float,
    duration: float,
    endpoints: _Endpoints,
) -> None:
    def finished() -> bool:
        p = daemon.progress
        caught_up = sent["done"] and p.records_consumed >= sent["n"] and p.lag == 0
        return stop.is_set() or time.monotonic() - began >= duration or caught_up

    if console.is_terminal:
        with Live(console=console, refresh_per_second=4) as live:
            while not finished():
                tracker.observe(daemon.progress)
                live.update(_table(daemon.progress, sent["n"], time.monotonic() - began, endpoints))
                time.sleep(_TICK_S)
        return
    last_line = 0.0
    while not finished():
        tracker.observe(daemon.progress)
        if time.monotonic() - last_line >= 5:
            last_line = time.monotonic()
            console.print(_line(daemon.progress, sent["n"], time.monotonic() - began))
        time.sleep(_TICK_S)


def _table(p: Progress, sent: int, elapsed: float, endpoints: _Endpoints) -> Table:
    table = Table(title="streamlearn: learning live", show_header=False)
    for key, value in _fields(p, sent, elapsed):
        table.add_row(key, value)
    table.add_row("serving", _listening(endpoints))
    return table


def _line(p: Progress, sent: int, elapsed: float) -> str:
    return "  ".join(f"{k}={v}" for k, v in _fields(p, sent, elapsed))


def _fields(p: Progress, sent: int, elapsed: float) -> list[tuple[str, str]]:
    return [
        ("elapsed", f"{elapsed:5.1f}s"),
        ("produced", str(sent)),
        ("learned", str(p.samples_learned)),
        ("rate", f"{p.samples_learned / max(elapsed, 1e-9):,.0f}/s"),
        ("accuracy(last 1k)", f"{p.accuracy:.3f}"),
        ("loss(last 1k)", f"{p.loss:.3f}"),
        ("predicted(unlabeled)", str(p.samples_predicted)),
        ("adapted(unlabeled)", f"{p.adapted} ({p.adapt_method}, {p.adapt_resets} guard resets)"),
        ("dead-lettered", str(p.records_invalid)),
        ("checkpoints", str(p.checkpoints)),
        ("lag", str(p.lag)),
        ("paused", "yes" if p.paused else "no"),
        (
            "drifts detected",
            f"{p.drifts}" + (f" (last at sample {p.last_drift_sample})" if p.drifts else ""),
        ),
        (
            "experts",
            f"{p.experts} (active {p.active_expert}; {p.spawns} spawned, {p.switches} reused)",
        ),
    ]


def _summary(
    console: Console, daemon: Daemon, tracker: _Tracker, sent: int, elapsed: float, notes: list[str]
) -> None:
    p = daemon.progress
    stats = daemon.engine.stats
    console.print(
        f"\n[bold]summary[/]: {sent} records sent, {p.samples_learned} samples "
        f"learned in {elapsed:.1f}s ({p.samples_learned / max(elapsed, 1e-9):,.0f}/s),"
        f" prequential accuracy {stats.cumulative('correct'):.3f} overall, "
        f"{p.samples_predicted} unlabeled predicted ({p.adapted} adapted on by "
        f"{p.adapt_method}, {p.adapt_resets} guard resets), {p.records_invalid} "
        f"dead-lettered, {p.checkpoints} checkpoints"
    )
    table = Table(title="accuracy per concept segment (rolling window of 1000)")
    for column in ("segment", "concept", "lowest", "at end", "drifts detected", "expert"):
        table.add_column(column)
    for index, seg in enumerate(tracker.segments):
        table.add_row(
            str(index),
            seg.concept,
            f"{seg.min_accuracy:.3f}",
            f"{seg.end_accuracy:.3f}",
            str(seg.drifts),
            seg.expert,
        )
    console.print(table)
    for note in notes:
        # Paths and answers are printed as they are: no markup, no wrapping inside them.
        console.print(note, soft_wrap=True, markup=False, highlight=False)
