"""The process model's parts, one at a time: the IPC link over a real Unix socket, snapshot
files between a writer and a reader, restart backoff, settings sent to a child."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from streamlearn.core.engine import Engine
from streamlearn.core.types import Sample
from streamlearn.metrics import Metrics
from streamlearn.runtime import processes
from streamlearn.runtime.ipc import (
    LearnerLink,
    LearnerPort,
    LinkClosedError,
    Message,
    Reply,
    recv_frame,
)
from streamlearn.runtime.launch import settings_document
from streamlearn.runtime.snapshots import EXPERTS, SnapshotReader, SnapshotWriter
from streamlearn.serve.board import SnapshotBoard
from streamlearn.serve.frozen import Assembler
from streamlearn.settings import ExpertsSettings, ModelSettings, Settings, load_settings
from tests.support.waiting import wait_for


def echo(request: Message, reply: Reply) -> None:
    if request.get("op") == "echo":
        reply({"id": request["id"], "value": request["value"]})


@pytest.fixture
def sock_path() -> Iterator[Path]:
    # Unix socket paths are short (108 bytes): pytest's tmp_path can be longer.
    path = Path(f"/tmp/sl-test-{os.getpid()}-{threading.get_ident()}.sock")
    yield path
    path.unlink(missing_ok=True)


def test_a_request_gets_its_answer_and_a_closed_learner_fails_what_waits(sock_path: Path) -> None:
    port = LearnerPort(sock_path, echo)
    link = LearnerLink(sock_path)
    link.start()
    assert not link.connected.wait(0.3), "no learner listening yet: not connected"
    port.start()
    assert link.connected.wait(5)
    assert link.request({"op": "echo", "value": [1, "a"]}).result(5)["value"] == [1, "a"]
    waiting = link.request({"op": "ignored"})  # the learner never answers this one
    port.close()
    with pytest.raises(LinkClosedError):
        waiting.result(5)
    wait_for(lambda: not link.connected.is_set(), 5, "the link to notice")
    with pytest.raises(LinkClosedError):
        link.request({"op": "echo", "value": 1}).result(1)
    link.close()


def test_the_link_comes_back_when_a_new_learner_listens(sock_path: Path) -> None:
    changes: list[bool] = []
    first = LearnerPort(sock_path, echo)
    first.start()
    link = LearnerLink(sock_path, on_change=changes.append)
    link.start()
    assert link.connected.wait(5)
    first.close()
    wait_for(lambda: not link.connected.is_set(), 5, "the first learner gone")
    second = LearnerPort(sock_path, echo)
    second.start()
    assert link.connected.wait(5)
    assert link.request({"op": "echo", "value": 2}).result(5)["value"] == 2
    assert changes[:3] == [True, False, True]
    link.close()
    second.close()


def test_a_frame_that_is_not_json_or_too_long_closes_the_connection(sock_path: Path) -> None:
    port = LearnerPort(sock_path, echo)
    port.start()
    for frame in (struct.pack(">I", 3) + b"{x}", struct.pack(">I", 2**31)):
        with socket.socket(socket.AF_UNIX) as raw:
            raw.connect(str(sock_path))
            raw.sendall(frame)
            raw.settimeout(5)
            with pytest.raises(LinkClosedError):
                recv_frame(raw)  # the learner hung up instead of answering
    port.close()


def samples(n: int, offset: float = 0.0, seed: int = 0) -> list[Sample]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g) + offset
    return [Sample(x=row.tolist(), y=int(row[0] > offset)) for row in x]


def trained_engine() -> Engine:
    engine = Engine(ModelSettings(hidden=[8], learning_rate=0.05))
    engine.process(samples(64))
    return engine


def reader_for(directory: Path, engine: Engine) -> SnapshotReader:
    return SnapshotReader(
        directory, Assembler(engine.settings, ExpertsSettings(), torch.device("cpu"))
    )


def test_a_written_snapshot_reads_back_and_answers_as_the_engine_does(tmp_path: Path) -> None:
    engine = trained_engine()
    writer = SnapshotWriter(tmp_path, Metrics())
    reader = reader_for(tmp_path, engine)
    assert reader.poll() is None  # nothing written yet
    assert writer.publish_from(engine) == 1
    snapshot = reader.poll()
    assert snapshot is not None and snapshot.version == 1
    assert snapshot.generation == writer.generation
    assert reader.poll() is None  # unchanged: nothing to load
    x = [[0.1, -0.3, 2.0]]
    (expected,) = engine.process([Sample(x=x[0])]).predictions
    answer = snapshot.predict(torch.tensor(x))
    assert answer.probabilities is not None
    assert answer.predictions == [expected.prediction]
    names = [str(label) for label in engine.labels.labels]
    assert dict(zip(names, answer.probabilities[0].tolist(), strict=True)) == expected.probabilities


def test_only_changed_experts_are_written_and_old_files_are_collected(tmp_path: Path) -> None:
    engine = trained_engine()
    writer = SnapshotWriter(tmp_path)
    writer.publish_from(engine)
    first = set(os.listdir(tmp_path / EXPERTS))
    assert len(first) == 1
    writer.publish_from(engine)  # same version: the head is only confirmed
    assert set(os.listdir(tmp_path / EXPERTS)) == first
    for step in range(4):
        engine.process(samples(32, seed=step + 1))
        writer.publish_from(engine)
    kept = os.listdir(tmp_path / EXPERTS)
    assert len(kept) == 3, "the files of the latest three heads stay, older ones go"
    assert not first & set(kept)


def test_a_new_learner_generation_replaces_a_higher_version(tmp_path: Path) -> None:
    board = SnapshotBoard()
    engine = trained_engine()
    for _ in range(3):
        engine.process(samples(32, seed=7))
    old = SnapshotWriter(tmp_path)
    old.publish_from(engine)
    reader = reader_for(tmp_path, engine)
    first = reader.poll()
    assert first is not None
    board.publish(first)
    restored = trained_engine()  # a learner restarted from an older checkpoint
    SnapshotWriter(tmp_path).publish_from(restored)
    second = reader.poll()
    assert second is not None
    board.publish(second)
    assert board.current is not None
    assert board.current.version == 1 < engine.version


def test_restarts_back_off_while_a_child_keeps_dying(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr("streamlearn.runtime.processes.time.monotonic", lambda: now[0])
    backoff = processes.Backoff()
    delays: list[float] = []
    for _ in range(7):
        delays.append(backoff.exited())
        now[0] += delays[-1]
        assert backoff.ready()
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    now[0] += processes.HEALTHY_S  # ran a while: the next death restarts quickly
    assert backoff.exited() == processes.RESTART_MIN_S


def test_a_child_gets_the_settings_with_their_secrets(tmp_path: Path) -> None:
    settings = load_settings(
        None, serve={"auth_token": "a-long-enough-token"}, checkpoint={"dir": str(tmp_path)}
    )
    document = settings_document(settings)
    assert document["serve"]["auth_token"] == "a-long-enough-token"
    child = Settings.model_validate(document)
    assert child == settings
    assert child.serve.auth_token is not None
    assert child.serve.auth_token.get_secret_value() == "a-long-enough-token"


def test_a_dead_supervisors_runtime_directory_is_removed_by_the_next_start(tmp_path: Path) -> None:
    from streamlearn.runtime.paths import remove_orphans

    dead, alive, foreign = (tmp_path / f"streamlearn-{n}" for n in ("dead", "alive", "x"))
    for root in (dead, alive, foreign):
        root.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    (dead / "supervisor.pid").write_text(str(gone.pid))
    (alive / "supervisor.pid").write_text(str(os.getpid()))
    assert remove_orphans(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and foreign.exists()
