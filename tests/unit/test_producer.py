"""`streamlearn produce`: record keys (--key, --key-template) and an unreachable broker."""

from __future__ import annotations

import gc
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamlearn.app.embedded import free_port
from streamlearn.app.producer import JsonLines, connect, key_of_field, key_of_template
from streamlearn.core.errors import SettingsError, StreamlearnError


def streamlearn(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_key_of_field_takes_strings_as_they_are_and_other_values_as_json() -> None:
    key = key_of_field("id")
    assert key(1, b'{"x": [1], "id": "msg-17"}') == b"msg-17"
    assert key(2, b'{"x": [1], "id": 17}') == b"17"
    assert key(3, b'{"x": [1], "id": {"a": 1}}') == b'{"a": 1}'


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            b'{"x": [1], "y": 0}',
            "record 4: field 'id' is missing; --key id keys each record by it (fields: x, y)",
        ),
        (b'{"x": [1], "id": null}', "record 4: field 'id' is null"),
        (b"not json", "record 4: not a JSON object, so --key id has no field to key it by"),
        (b"[1, 2]", "record 4: not a JSON object"),
    ],
)
def test_key_of_field_names_the_record_without_it(value: bytes, message: str) -> None:
    with pytest.raises(StreamlearnError, match="^" + re.escape(message)):
        key_of_field("id")(4, value)


def test_key_of_template_formats_the_records_fields() -> None:
    key = key_of_template("{source}-{id:>04}")
    assert key(1, b'{"x": [1], "source": "s3", "id": 7}') == b"s3-0007"
    with pytest.raises(
        StreamlearnError,
        match=r"^record 2: field 'source' is missing for "
        r"--key-template '\{source\}-\{id:>04\}'",
    ):
        key(2, b'{"x": [1], "id": 7}')


@pytest.mark.parametrize("template", ["no fields", "{}", "{0}", "{a.b}", "{a[0]}", "{a"])
def test_key_templates_name_fields_of_the_record_only(template: str) -> None:
    with pytest.raises(SettingsError, match="--key-template"):
        key_of_template(template)


def test_a_json_lines_file_names_the_line_at_fault(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": [1], "id": "a"}\n\n{"x": [2]}\n')
    lines = JsonLines(path)
    key = key_of_field("id", lines.where)
    with pytest.raises(StreamlearnError, match=f"^{path} line 3: field 'id' is missing"):
        [key(i, value) for i, value in enumerate(lines, 1)]


def test_help_documents_both_key_options() -> None:
    done = streamlearn("produce", "--help")
    assert done.returncode == 0
    assert "--key FIELD" in done.stdout and "--key-template TEMPLATE" in done.stdout


def test_key_and_key_template_exclude_each_other(tmp_path: Path) -> None:
    done = streamlearn(
        "produce", "--file", str(tmp_path / "x"), "--key", "id", "--key-template", "{id}"
    )
    assert done.returncode == 2 and "not allowed with argument" in done.stderr


@pytest.mark.slow  # a subprocess waits out a bootstrap timeout
def test_an_unreachable_broker_is_one_line_and_exit_1_within_seconds(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": [1], "y": 0}\n')
    servers = f"127.0.0.1:{free_port()}"  # nobody listens there
    began = time.monotonic()
    done = streamlearn("produce", "--bootstrap-servers", servers, "--file", str(path))
    took = time.monotonic() - began
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"error: cannot reach a Kafka broker at {servers} within 3 s (KafkaTimeoutError)"
    ]
    assert "Traceback" not in done.stderr + done.stdout
    assert took < 10, f"took {took:.1f} s"


@pytest.mark.slow  # waits out bootstrap timeouts
def test_a_failed_connect_leaves_no_client_thread_or_socket_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A guard against leaks that outlive garbage collection (a live IO thread holds its
    # sockets). A few of the client's sockets wait for the collector even when closed, and
    # kafka's log records (pytest keeps them) would hold them: they go nowhere here.
    kafka_log = logging.getLogger("kafka")
    monkeypatch.setattr(kafka_log, "handlers", [logging.NullHandler()])
    monkeypatch.setattr(kafka_log, "propagate", False)
    gc.collect()
    before = {t.ident for t in threading.enumerate()}
    descriptors = len(os.listdir("/proc/self/fd"))
    assert "cannot reach a Kafka broker" in _connect_error(f"127.0.0.1:{free_port()}")
    gc.collect()
    left = [t.name for t in threading.enumerate() if t.ident not in before and t.is_alive()]
    assert left == []
    assert len(os.listdir("/proc/self/fd")) == descriptors


def _connect_error(servers: str) -> str:
    """The message alone: a kept exception keeps its context's frames, and their client."""
    try:
        connect(servers)
    except StreamlearnError as exc:
        return str(exc)
    raise AssertionError("connected to nobody")
