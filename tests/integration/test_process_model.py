"""The process model of `streamlearn run`: a serving process or the learner killed with
SIGKILL under load, over a real broker, with clients in other threads of this process."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from streamlearn.app.embedded import EmbeddedBroker
from streamlearn.streams.synthetic import take
from tests.integration.conftest import DaemonProcess, send
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration
INFER = "/v2/models/streamlearn/infer"
BODY = {"inputs": [{"name": "input", "shape": [1, 9], "datatype": "FP32", "data": [[0.5] * 9]}]}


class Load:
    """Back-to-back single-row infers from a thread; every outcome counted."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.outcomes: Counter[str] = Counter()
        self.ok_after: list[float] = []  # monotonic times of successful answers
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=5) as client:
            while not self._stop.is_set():
                try:
                    code = client.post(INFER, json=BODY).status_code
                except httpx.TransportError as exc:
                    self.outcomes[type(exc).__name__] += 1
                    time.sleep(0.01)
                    continue
                self.outcomes[str(code)] += 1
                if code == 200:
                    self.ok_after.append(time.monotonic())


def status(base: str) -> dict[str, Any]:
    answer: dict[str, Any] = httpx.get(f"{base}/v1/status", timeout=5).json()
    return answer


def ready(base: str) -> bool:
    try:
        return httpx.get(f"{base}/v2/health/ready", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def learned(daemon: DaemonProcess) -> float:
    return daemon.metric("streamlearn_samples_learned_total") or 0.0


def test_a_killed_serving_process_is_restarted_and_the_learner_keeps_learning(
    broker: EmbeddedBroker, topics: dict[str, str], daemon_factory: Callable[..., DaemonProcess]
) -> None:
    send(broker, topics["input"], [json.dumps(s).encode() for s in take("agrawal", 40_000)])
    daemon = daemon_factory().start()
    base = f"http://127.0.0.1:{daemon.http_port}"
    wait_for(lambda: ready(base), 60, "serving ready")
    before = status(base)["processes"]
    with Load(base) as load:
        wait_for(lambda: load.outcomes["200"] >= 50, 30, "answers under load")
        learned_at_kill = learned(daemon)
        killed_at = time.monotonic()
        os.kill(before["serving"], signal.SIGKILL)
        wait_for(
            lambda: any(t > killed_at + 0.5 for t in load.ok_after),
            60,
            "answers from the restarted serving process",
        )
        wait_for(lambda: learned(daemon) > learned_at_kill + 1_000, 60, "learning on")
    after = status(base)["processes"]
    assert after["serving"] != before["serving"]
    assert after["learner"] == before["learner"], "the learner was not touched"
    events = [e["event"] for e in daemon.log_events()]
    assert "serving_process_exited" in events and events.count("serving_process_started") == 2
    assert "learner_exited" not in events
    assert load.outcomes["500"] == 0, load.outcomes
    code, _ = daemon.terminate(timeout=30)
    assert code == 0


def test_a_killed_learner_turns_serving_not_ready_then_comes_back(
    broker: EmbeddedBroker, topics: dict[str, str], daemon_factory: Callable[..., DaemonProcess]
) -> None:
    send(broker, topics["input"], [json.dumps(s).encode() for s in take("agrawal", 40_000)])
    daemon = daemon_factory(checkpoint={"every_samples": 2_000}).start()
    base = f"http://127.0.0.1:{daemon.http_port}"
    wait_for(lambda: ready(base), 60, "serving ready")
    wait_for(
        lambda: (daemon.metric('streamlearn_checkpoints_total{result="ok"}') or 0) >= 1,
        60,
        "a checkpoint",
    )
    before = status(base)
    with Load(base) as load:
        os.kill(before["processes"]["learner"], signal.SIGKILL)
        wait_for(lambda: not ready(base), 5, "serving to turn not-ready")
        down = status(base)
        assert down["learner_up"] is False and down["ready"] is False
        # Not ready, but whoever still asks gets an answer from the last complete snapshot.
        answered = httpx.post(f"{base}{INFER}", json=BODY, timeout=5)
        assert answered.status_code == 200
        assert int(answered.json()["model_version"]) == down["served_version"]
        wait_for(lambda: ready(base), 60, "the restarted learner")
    old_pid = before["processes"]["learner"]
    wait_for(lambda: status(base)["processes"]["learner"] != old_pid, 5, "the new learner's status")
    after = status(base)
    assert after["processes"]["serving"] == before["processes"]["serving"]
    assert load.outcomes["500"] == 0 and load.outcomes["200"] > 0, load.outcomes
    events = [e for e in daemon.log_events() if e["event"] == "learner_exited"]
    assert events and events[0]["exit_code"] == -signal.SIGKILL
    restored = [e for e in daemon.log_events() if e["event"] == "checkpoint_restored"]
    assert restored, "the new learner restored the last checkpoint"
    code, _ = daemon.terminate(timeout=30)
    assert code == 0
