"""The ``streamlearn`` command: run | demo | produce | checkpoint inspect.

Exit codes: 0 done, 1 failed, 2 bad settings or arguments, 130 stopped by a second signal.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console

from streamlearn._version import __version__
from streamlearn.core.errors import CheckpointError, SettingsError, StreamlearnError
from streamlearn.core.logging import configure_logging, get_logger

if TYPE_CHECKING:
    from streamlearn.app.producer import KeyOf, Where

log = get_logger(__name__)
EXIT_FAILED, EXIT_USAGE, EXIT_SECOND_SIGNAL = 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_USAGE
    # soft_wrap: one line per problem even in a pipe, where rich would wrap at 80 columns.
    err = Console(stderr=True, soft_wrap=True)
    try:
        return int(args.handler(args))
    except SettingsError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_USAGE
    except StreamlearnError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamlearn",
        description="Learn online from a drifting Kafka stream: test-then-train, checkpoints "
        "with offsets, Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"streamlearn {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the daemon (the production entry point)",
        description="Consume samples from Kafka and learn until SIGTERM. "
        "Settings: the YAML file, then STREAMLEARN_<SECTION>__<KEY> "
        "environment variables on top.",
    )
    run.add_argument("--config", type=Path, help="YAML settings file (see config/default.yaml)")
    run.set_defaults(handler=_run)

    demo = sub.add_parser(
        "demo",
        help="embedded broker + drifting stream + daemon, live",
        description="Start an embedded Kafka-protocol broker, produce a "
        "drifting stream with recurring concepts, learn it live "
        "while serving it over HTTP and gRPC, print a "
        "summary and write a PNG of the run. Ctrl-C stops "
        "cleanly.",
    )
    demo.add_argument("--samples", type=int, default=60_000, help="samples to produce")
    demo.add_argument("--duration", type=float, default=60.0, help="stop after this many s")
    demo.add_argument("--stream", default="agrawal", help="built-in stream (see produce)")
    demo.add_argument(
        "--rate",
        type=float,
        default=None,
        help="records/s (default: as fast as the learner goes, about a minute in all)",
    )
    demo.add_argument("--segment", type=int, default=10_000, help="samples per concept")
    demo.add_argument(
        "--late-labels",
        action="store_true",
        help="send each label 1-5 s after its sample, on the labels topic: the daemon "
        "joins it by id and scores the answer it served",
    )
    demo.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=None,
        help="where checkpoints go (default: a temporary directory)",
    )
    plot = demo.add_mutually_exclusive_group()
    plot.add_argument(
        "--plot",
        type=Path,
        default=Path("streamlearn-demo.png"),
        metavar="PATH",
        help="PNG of the run: accuracy, drift alarms, experts, "
        "concept changes (default: %(default)s; needs matplotlib)",
    )
    plot.add_argument(
        "--no-plot", dest="plot", action="store_const", const=None, help="write no PNG"
    )
    demo.set_defaults(handler=_demo)

    produce = sub.add_parser(
        "produce",
        help="send a built-in stream or a JSON-lines file",
        description="Send records to a topic with a rate limit and a progress bar.",
    )
    produce.add_argument("--bootstrap-servers", default="localhost:9092")
    produce.add_argument("--topic", default="streamlearn.samples")
    source = produce.add_mutually_exclusive_group()
    source.add_argument(
        "--stream", default="agrawal", help="built-in stream: agrawal, sea, stagger, hyperplane"
    )
    source.add_argument("--file", type=Path, help="JSON-lines file, one record per line")
    produce.add_argument("--samples", type=int, default=10_000, help="samples (built-in)")
    produce.add_argument("--segment", type=int, default=2_000, help="samples per concept")
    produce.add_argument(
        "--per-record", type=int, default=1, help="samples per record (>1 sends batch records)"
    )
    produce.add_argument("--rate", type=float, default=None, help="records per second cap")
    produce.add_argument("--seed", type=int, default=42)
    keys = produce.add_mutually_exclusive_group()
    keys.add_argument(
        "--key",
        metavar="FIELD",
        help="key each record by its JSON field FIELD (e.g. id, source): "
        "records with one key share a partition, in order. A record "
        "without it stops the run there, naming it (those before it "
        "are sent)",
    )
    keys.add_argument(
        "--key-template",
        metavar="TEMPLATE",
        help="key each record by TEMPLATE filled with its fields, Python "
        "str.format syntax (e.g. '{source}-{id}')",
    )
    produce.set_defaults(handler=_produce)

    ckpt = sub.add_parser("checkpoint", help="work with checkpoint files")
    ckpt_sub = ckpt.add_subparsers(metavar="ACTION")
    inspect = ckpt_sub.add_parser(
        "inspect",
        help="print what a checkpoint holds",
        description="PATH is a checkpoint file, or a directory (its newest valid checkpoint).",
    )
    inspect.add_argument("path", type=Path)
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)
    return parser


def _run(args: argparse.Namespace) -> int:
    from streamlearn.settings import load_settings

    settings = load_settings(args.config)
    configure_logging(settings.log.level, settings.log.format)
    if not settings.serve.enabled:
        return _run_learner_only(settings)
    from streamlearn.runtime.processes import ProcessLearner
    from streamlearn.serve.auth import TokenAuth

    # The serving processes read the token file too; a bad one must refuse the start here
    # (exit 2), not send them into a restart loop.
    TokenAuth.from_settings(settings.serve)
    from streamlearn.app.service import Service

    try:
        service = Service(ProcessLearner(settings))
        if settings.metrics.enabled:
            port = service.serve_metrics(settings.metrics.host, settings.metrics.port)
            log.info("metrics_listening", host=settings.metrics.host, port=port)
    except OSError as exc:
        # the error names the port's setting, its address and why: "serve.http_port
        # 127.0.0.1:8080: Address already in use"
        raise StreamlearnError(f"cannot listen on {exc.strerror}") from None
    _install_signal_handlers(service.request_stop, service.kill)
    return service.run()


def _run_learner_only(settings: Any) -> int:
    """No serving: the learner alone, in this process, as one needs nothing else."""
    from streamlearn.daemon import kafka_daemon
    from streamlearn.runtime.launch import EXIT_REJOIN, limit_torch_threads
    from streamlearn.runtime.sockets import binding
    from streamlearn.sync.group import GroupLostError

    limit_torch_threads(settings.engine.torch_threads)
    daemon = kafka_daemon(settings)
    if settings.metrics.enabled:
        host = settings.metrics.host
        try:
            with binding("metrics.port", host, settings.metrics.port):
                port, _ = daemon.metrics.serve(host, settings.metrics.port)
        except OSError as exc:
            raise StreamlearnError(f"cannot listen on {exc.strerror}") from None
        log.info("metrics_listening", host=host, port=port)
    _install_signal_handlers(daemon.request_stop)
    try:
        daemon.run()
    except GroupLostError as exc:
        # No supervisor here to start the learner again: exit, for the orchestrator to
        # restart this replica into the group's next generation (docs/scaling.md).
        log.warning(
            "learner_exited", exit_code=EXIT_REJOIN, reason="sync group re-forms", error=str(exc)
        )
        return EXIT_REJOIN
    return 0


def _install_signal_handlers(stop: Any, kill: Any = None) -> None:
    """First SIGTERM/SIGINT: finish the batch, checkpoint, exit 0. Second: kill the children
    and exit at once (safe: checkpoint files are replaced atomically, a half-written one is
    only a .tmp)."""
    received = {"count": 0}

    def handler(signum: int, frame: FrameType | None) -> None:
        received["count"] += 1
        if received["count"] > 1:
            if kill is not None:
                kill()
            os._exit(EXIT_SECOND_SIGNAL)
        log.info("stop_requested", signal=signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _demo(args: argparse.Namespace) -> int:
    from streamlearn.app.demo import run_demo

    return run_demo(args, _install_signal_handlers)


def _produce(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from streamlearn.app.producer import connect, send_all

    records, total, where = _records_to_produce(args)
    key = _record_key(args, where)
    configure_logging("warning")
    # Before the progress bar: an unreachable broker is then the one line main() prints.
    producer = connect(args.bootstrap_servers)
    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(f"producing to {args.topic}", total=total)
        sent = send_all(
            producer,
            args.topic,
            records,
            args.rate,
            on_sent=lambda n: bar.update(task, completed=n),
            key=key,
        )
    Console(stderr=True).print(f"sent {sent} records to {args.topic}")
    return 0


def _record_key(args: argparse.Namespace, where: Where) -> KeyOf | None:
    from streamlearn.app.producer import key_of_field, key_of_template

    if args.key is not None:
        return key_of_field(args.key, where)
    if args.key_template is not None:
        return key_of_template(args.key_template, where)
    return None


def _records_to_produce(args: argparse.Namespace) -> tuple[Iterable[bytes], int | None, Where]:
    """The records, how many (None: unknown) and how an error names one of them."""
    from streamlearn.app.producer import JsonLines, encode_samples, record_number

    if args.file is not None:
        lines = JsonLines(args.file)
        return lines, None, lines.where
    from streamlearn.streams import STREAMS, drifting_stream  # river: seconds to import

    if args.stream not in STREAMS:
        raise SettingsError([f"--stream: unknown {args.stream!r}; allowed: {', '.join(STREAMS)}"])
    samples = drifting_stream(args.stream, args.samples, args.seed, args.segment)
    total = -(-args.samples // max(1, args.per_record))
    return encode_samples(samples, args.per_record), total, record_number


def _inspect(args: argparse.Namespace) -> int:
    from streamlearn.checkpoint.inspect import describe

    try:
        summary = describe(args.path)
    except CheckpointError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return EXIT_FAILED
    if args.json:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        console = Console()
        for key, value in summary.items():
            console.print(f"[bold]{key}[/]: {value}", highlight=False)
    return 0
