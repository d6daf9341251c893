"""Every shell and HTTP example in README.md and docs/*.md, run against a real daemon.

One ``streamlearn run`` (tests/integration/conftest.py ``DaemonProcess``) on the embedded
broker serves this module, with an auth token and data learned first. Each example is one
test, named by its file and line; examples run in the order of the docs.

What is changed in an example before it runs, and nothing else:

- hosts and ports: ``localhost``, ``127.0.0.1``, ``0.0.0.0`` or ``kafka`` with port 8080,
  8081 or 9100 become the daemon's HTTP, gRPC and metrics ports on 127.0.0.1, and with
  9092 the broker;
- the environment: ``STREAMLEARN_AUTH_TOKEN`` is the daemon's token; ``streamlearn`` is the
  checkout's (the virtualenv's bin first on PATH); ``STREAMLEARN_KAFKA__BOOTSTRAP_SERVERS``
  is the broker and ``STREAMLEARN_SERVE__*``/``STREAMLEARN_METRICS__*`` put the HTTP, gRPC
  and metrics ports of a ``streamlearn run`` the example starts on free loopback ports;
  curl reads a ``.curlrc`` (``CURL_HOME``) with ``fail-with-body``, so an HTTP error
  status fails the example as it shows on a terminal.

How an example runs:

- ``sh``/``bash``/``shell``: as one ``bash -e -o pipefail -c`` script in a scratch directory
  that links the repository's top-level files (``config/`` and the rest); it must exit 0.
  A ``streamlearn run`` line runs on its own, as a daemon: it must become ready
  (``/v2/health/ready`` 200) and then exit 0 on SIGTERM. The broker's default input topic
  holds labeled samples, so it has something to learn.
- ``console``: the ``$ `` commands run in one shell; the lines after each are its output.
- ``http``: the request as written, to the daemon's HTTP port; it must answer below 400.
- Shown output (a ``console`` block, or a block after ``<!-- output of the example above
  -->``) is matched by tests/docs/markdown.py ``matches``: JSON structurally (same keys,
  same array lengths; any number for a number, any digit string for a digit string,
  ``"..."`` for anything), text line by line with ``...`` matching any text, or, alone on a
  line, any lines.
- ``<!-- not run in CI: REASON -->`` before a fence skips it, with that reason.

An example that fails because the code is wrong is listed in ``XFAIL`` below (strict: it
fails the suite once it passes, so the entry goes when the fix lands).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer

from streamlearn.app.embedded import EmbeddedBroker, create_topics, free_port
from tests.docs.markdown import ROOT, Block, all_blocks, expected_outputs, matches
from tests.integration.conftest import DaemonProcess, fresh_topics
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOKEN = "d7e1a94c05b83f62ae19"  # settings refuse short or placeholder tokens
LEARNED = 1_500
# Examples that fail because the code is wrong: id -> what fails. Strict, so each entry
# goes once the code is fixed.
XFAIL: dict[str, str] = {}

BLOCKS = all_blocks()
OUTPUTS = expected_outputs(BLOCKS)
DAEMON = re.compile(r"^\s*(?:[A-Za-z_]\w*=\S*\s+)*streamlearn\s+run\b")
HOSTPORT = re.compile(r"\b(?:localhost|127\.0\.0\.1|0\.0\.0\.0|kafka):(\d{2,5})\b")
EXAMPLE_TIMEOUT_S = 90


def labeled(n: int, seed: int) -> list[bytes]:
    """Three features, classes 0 and 1: the shape of every example in the docs."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        x = [round(rng.uniform(-2, 6), 3) for _ in range(3)]
        out.append(json.dumps({"x": x, "y": int(x[0] + x[1] > x[2])}).encode())
    return out


@dataclass
class Served:
    broker: EmbeddedBroker
    daemon: DaemonProcess
    workdir: Path
    env: dict[str, str]
    side_http_port: int

    def substitute(self, text: str) -> str:
        ports = {
            8080: self.daemon.http_port,
            8081: self.daemon.grpc_port,
            9100: self.daemon.metrics_port,
            9092: self.broker.port,
        }

        def swap(found: re.Match[str]) -> str:
            port = ports.get(int(found[1]))
            return found[0] if port is None else f"127.0.0.1:{port}"

        return HOSTPORT.sub(swap, text)


def _status(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as answer:
            status: dict[str, Any] = json.loads(answer.read())
            return status
    except OSError:
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    assert shutil.which("curl"), "the docs' examples need curl (.ci/run installs it)"
    base = tmp_path_factory.mktemp("docs")
    with EmbeddedBroker() as broker:
        topics = fresh_topics(broker.bootstrap, 2)
        # The README's own `streamlearn run` examples read the default input topic.
        create_topics(broker.bootstrap, {"streamlearn.samples": 2})
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap)
        for value in labeled(LEARNED, seed=1):
            producer.send(topics["input"], value=value)
        for value in labeled(300, seed=2):  # for the examples' own `streamlearn run`
            producer.send("streamlearn.samples", value=value)
        producer.flush()
        producer.close()
        (base / "daemon").mkdir()
        daemon = DaemonProcess(
            base / "daemon",
            broker,
            topics,
            f"docs-{uuid.uuid4().hex[:8]}",
            serve={"auth_token": TOKEN, "publish_interval_ms": 100},
        )
        daemon.start()
        try:

            def learned() -> bool:
                status = _status(daemon.http_port) or {}
                return (
                    status.get("served_version") is not None
                    and (status.get("learner") or {}).get("samples_learned", 0) >= LEARNED
                )

            wait_for(lambda: learned() or daemon._dead(), 90, f"{LEARNED} samples learned")
            assert not daemon._dead(), daemon.log_text()
            workdir = base / "examples"
            workdir.mkdir()
            for entry in ROOT.iterdir():
                if not entry.name.startswith(".") and entry.name != "checkpoints":
                    (workdir / entry.name).symlink_to(entry)
            curl_home = base / "curl"
            curl_home.mkdir()
            (curl_home / ".curlrc").write_text("fail-with-body\nshow-error\n")
            side = [free_port() for _ in range(3)]
            env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLEARN_")}
            env.update(
                {
                    "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                    "PYTHONPATH": str(ROOT),
                    "CURL_HOME": str(curl_home),
                    "STREAMLEARN_AUTH_TOKEN": TOKEN,
                    "STREAMLEARN_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
                    "STREAMLEARN_SERVE__HOST": "127.0.0.1",
                    "STREAMLEARN_METRICS__HOST": "127.0.0.1",
                    "STREAMLEARN_SERVE__HTTP_PORT": str(side[0]),
                    "STREAMLEARN_SERVE__GRPC_PORT": str(side[1]),
                    "STREAMLEARN_METRICS__PORT": str(side[2]),
                }
            )
            yield Served(broker, daemon, workdir, env, side[0])
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                try:
                    daemon.terminate(timeout=30)
                finally:
                    daemon.stop()


def _failed(what: str, script: str, done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{what} exited {done.returncode}\n--- script\n{script}\n--- stdout\n"
        f"{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )


def run_script(served: Served, script: str) -> str:
    try:
        done = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=served.workdir,
            env=served.env,
            capture_output=True,
            text=True,
            timeout=EXAMPLE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"still running after {EXAMPLE_TIMEOUT_S}s:\n{script}\n--- "
            f"stdout\n{exc.stdout!r}\n--- stderr\n{exc.stderr!r}"
        ) from None
    assert done.returncode == 0, _failed("the example", script, done)
    return done.stdout


def run_daemon(served: Served, command: str) -> None:
    """`streamlearn run ...`: ready on its HTTP port, then exits 0 on SIGTERM."""
    log_path = served.workdir / f"run-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", command],
            cwd=served.workdir,
            env=served.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{served.side_http_port}/v2/health/ready", timeout=2
                ) as answer:
                    ok: bool = answer.status == 200
                    return ok
            except OSError:
                return False

        wait_for(
            lambda: ready() or process.poll() is not None,
            EXAMPLE_TIMEOUT_S,
            f"`{command}` to be ready",
        )
        assert process.poll() is None, (
            f"`{command}` exited {process.returncode}:\n{log_path.read_text()[-3000:]}"
        )
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
        assert code == 0, f"`{command}` exited {code} on SIGTERM:\n{log_path.read_text()[-3000:]}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def logical_lines(text: str) -> list[str]:
    """Lines, a trailing backslash joining the next one."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        pending += line + "\n"
        if not line.endswith("\\"):
            out.append(pending)
            pending = ""
    if pending:
        out.append(pending)
    return out


def run_sh(served: Served, text: str) -> str:
    """The block as one script, cut around each `streamlearn run` (a daemon of its own)."""
    output, script = [], ""
    for line in logical_lines(text):
        if DAEMON.match(line):
            if script.strip():
                output.append(run_script(served, script))
            script = ""
            run_daemon(served, line.strip())
        else:
            script += line
    if script.strip():
        output.append(run_script(served, script))
    return "".join(output)


SEPARATOR = "-- streamlearn docs: next command --"


def run_console(served: Served, text: str) -> None:
    commands: list[str] = []
    shown: list[str] = []
    continued = False
    for line in text.splitlines():
        if line.startswith("$ ") or continued:
            if line.startswith("$ "):
                commands.append("")
                shown.append("")
                line = line[2:]
            commands[-1] += line + "\n"
            continued = line.endswith("\\")
        elif commands:
            shown[-1] += line + "\n"
    assert commands, "a console block needs `$ ` commands"
    script = f"printf '\\n%s\\n' '{SEPARATOR}'\n".join(commands)
    outputs = run_script(served, script).split(f"\n{SEPARATOR}\n")
    for command, expected, actual in zip(commands, shown, outputs, strict=True):
        if expected.strip():
            mismatch = matches(expected, actual)
            assert mismatch is None, f"$ {command.strip()}\n{mismatch}"


def run_http(served: Served, text: str) -> str:
    lines = text.splitlines()
    method, target = lines[0].split()[:2]
    headers: dict[str, str] = {}
    rest = 1
    while rest < len(lines) and re.match(r"^[A-Za-z0-9-]+:\s", lines[rest]):
        name, _, value = lines[rest].partition(":")
        headers[name] = re.sub(r"\$\{?(\w+)\}?", lambda v: served.env.get(v[1], ""), value.strip())
        rest += 1
    body = "\n".join(lines[rest:]).strip("\n").encode()
    connection = http.client.HTTPConnection("127.0.0.1", served.daemon.http_port, timeout=30)
    try:
        connection.request(method, target, body=body or None, headers=headers)
        answer = connection.getresponse()
        content = answer.read().decode(errors="replace")
    finally:
        connection.close()
    assert answer.status < 400, f"{method} {target}: {answer.status} {content[:2000]}"
    return content


def _params() -> list[Any]:  # pytest.param(...) entries
    out = []
    for block in BLOCKS:
        if not block.runnable and block.not_run is None:
            continue
        marks = (
            [pytest.mark.skip(reason=f"not run in CI: {block.not_run}")]
            if block.not_run is not None
            else [pytest.mark.xfail(strict=True, reason=XFAIL[block.id])]
            if block.id in XFAIL
            else []
        )
        out.append(pytest.param(block, id=block.id, marks=marks))
    return out


@pytest.mark.parametrize("block", _params())
def test_example(block: Block, served: Served) -> None:
    text = served.substitute(block.text)
    if block.lang == "console":
        run_console(served, text)
        return
    actual = run_http(served, text) if block.lang == "http" else run_sh(served, text)
    if block.id in OUTPUTS:
        expected = OUTPUTS[block.id]
        mismatch = matches(expected.text, actual)
        assert mismatch is None, f"output differs from {expected.id}: {mismatch}"
