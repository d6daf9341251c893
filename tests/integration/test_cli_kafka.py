"""The command line against a real broker: produce and the demo."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition

from streamlearn.app.embedded import EmbeddedBroker
from tests.integration.conftest import read_topic

pytestmark = pytest.mark.integration


def streamlearn(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamlearn", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_produce_a_builtin_stream_as_batch_records(
    broker: EmbeddedBroker, topics: dict[str, str]
) -> None:
    done = streamlearn(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topics["dlq"],
        "--stream",
        "sea",
        "--samples",
        "250",
        "--per-record",
        "100",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(r.value) for r in read_topic(broker, topics["dlq"], 3)]
    assert [len(r["samples"]) for r in records] == [100, 100, 50]
    assert set(records[0]["samples"][0]) == {"x", "y", "task", "id"}


def test_produce_a_json_lines_file_as_is(
    broker: EmbeddedBroker, topics: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": [1], "y": 0}\n\n{"x": [2]}\nnot json\n')
    done = streamlearn(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topics["dlq"],
        "--file",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    values = [r.value for r in read_topic(broker, topics["dlq"], 3)]
    assert values == [b'{"x": [1], "y": 0}', b'{"x": [2]}', b"not json"]


def test_produce_names_an_unknown_stream() -> None:
    done = streamlearn("produce", "--stream", "nope")
    assert done.returncode == 2 and "allowed: agrawal, sea" in done.stderr


def test_demo_runs_its_own_broker_serves_and_prints_a_summary(tmp_path: Path) -> None:
    plot = tmp_path / "run.png"
    done = streamlearn(
        "demo",
        "--samples",
        "3000",
        "--segment",
        "1000",
        "--duration",
        "60",
        "--rate",
        "1000",
        "--plot",
        str(plot),
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "summary: 3000 records sent" in out
    assert "accuracy per concept segment" in out
    assert "serving: HTTP at http://127.0.0.1:" in out and ", gRPC at 127.0.0.1:" in out
    curl = [line for line in out.splitlines() if line.startswith("curl ")]
    assert len(curl) == 1 and "-H 'Content-Type: application/json'" in curl[0]
    assert "served while learning: HTTP at http://127.0.0.1:" in out
    assert "the curl request was answered: predictions [" in out
    assert f"plot of the run written to {plot}" in out
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_demo_without_a_plot_writes_none(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "streamlearn",
            "demo",
            "--samples",
            "500",
            "--segment",
            "250",
            "--duration",
            "30",
            "--rate",
            "1000",
            "--no-plot",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "plot" not in done.stdout.split("summary:")[1]
    assert list(tmp_path.iterdir()) == []


def read_all(
    broker: EmbeddedBroker, topic: str, partitions: int, count: int, timeout: float = 20.0
) -> list[Any]:  # kafka-python ConsumerRecords (untyped)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        for records in consumer.poll(500).values():
            out.extend(records)
    consumer.close()
    return out


def test_produce_keys_records_by_a_field_so_a_source_shares_a_partition(
    broker: EmbeddedBroker, topics: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    sources = ["a", "b", "c", "d"] * 5
    path.write_text(
        "".join(
            json.dumps({"x": [i], "y": i % 2, "source": s}) + "\n" for i, s in enumerate(sources)
        )
    )
    done = streamlearn(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topics["input"],
        "--file",
        str(path),
        "--key",
        "source",
    )
    assert done.returncode == 0, done.stderr
    records = read_all(broker, topics["input"], 2, len(sources))
    assert sorted(r.key for r in records) == sorted(s.encode() for s in sources)
    partitions: dict[bytes, set[int]] = {}
    for r in records:
        assert json.loads(r.value)["source"].encode() == r.key
        partitions.setdefault(r.key, set()).add(r.partition)
    assert all(len(p) == 1 for p in partitions.values()), partitions
    # In order within a source: its records share a partition.
    for key in partitions:
        xs = [json.loads(r.value)["x"][0] for r in records if r.key == key]
        assert xs == sorted(xs)


def test_produce_keys_a_builtin_stream_by_a_template(
    broker: EmbeddedBroker, topics: dict[str, str]
) -> None:
    done = streamlearn(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topics["dlq"],
        "--stream",
        "sea",
        "--samples",
        "5",
        "--key-template",
        "{task}-{id}",
    )
    assert done.returncode == 0, done.stderr
    records = read_topic(broker, topics["dlq"], 5)
    for r in records:
        sample = json.loads(r.value)
        assert r.key == f"{sample['task']}-{sample['id']}".encode()


def test_produce_stops_at_a_record_without_the_key_field_naming_its_line(
    broker: EmbeddedBroker, topics: dict[str, str], tmp_path: Path
) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text('{"x": [1], "id": "a"}\n\n{"x": [2]}\n')
    done = streamlearn(
        "produce",
        "--bootstrap-servers",
        broker.bootstrap,
        "--topic",
        topics["dlq"],
        "--file",
        str(path),
        "--key",
        "id",
    )
    assert done.returncode == 1
    assert f"error: {path} line 3: field 'id' is missing" in done.stderr
    assert "Traceback" not in done.stderr
