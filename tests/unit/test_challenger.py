"""The challenger: paired scores on delayed labels, promotion on a one-sided bound."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from structlog.testing import capture_logs

from streamlearn.checkpoint import FileCheckpointStore
from streamlearn.checkpoint.inspect import describe
from streamlearn.core.adapt.adapter import AdaptReport
from streamlearn.core.labels.challenger import ChallengerJudge, difference_lower_bound
from streamlearn.core.types import Sample
from streamlearn.sinks import MemorySink
from tests.unit.test_daemon import Source, make
from tests.unit.test_late_labels_daemon import LABELS, ON, phase, started, value


def test_the_lower_bound_is_the_paired_difference_less_its_noise() -> None:
    # 100 pairs: 30 only the challenger got right, 10 only the champion.
    d, var = 0.2, (0.4 - 0.04) / 100
    assert difference_lower_bound(30, 10, 100, 1.645) == pytest.approx(d - 1.645 * math.sqrt(var))
    assert difference_lower_bound(0, 0, 100, 1.645) == 0.0  # identical answers: no evidence
    assert difference_lower_bound(0, 0, 0, 1.645) == -1.0


def test_a_block_promotes_only_past_the_margin_with_confidence() -> None:
    judge = ChallengerJudge(window=100, margin=0.02, confidence=0.95)
    # Block 1: the challenger better by 20 points (b=30, c=10): promoted at its 100th pair.
    pairs = [(False, True)] * 30 + [(True, False)] * 10 + [(True, True)] * 60
    decided = [judge.add(*p) for p in pairs]
    assert all(d is None for d in decided[:-1])
    block = decided[-1]
    assert block is not None and block.pairs == 100
    assert (block.only_challenger, block.only_champion) == (30, 10)
    assert (block.champion, block.challenger) == (0.7, 0.9)
    assert judge.n == 0  # the next block starts over
    # Block 2: better by 4 points on 100 pairs (b=6, c=2) is within the noise: not promoted.
    pairs = [(False, True)] * 6 + [(True, False)] * 2 + [(True, True)] * 92
    assert [judge.add(*p) for p in pairs] == [None] * 100
    assert judge.last is not None and judge.last.lower_bound < 0.02


# A champion that barely learns (1e-6) against the same model at 3e-2.
SLOW_CHAMPION_FAST_CHALLENGER: dict[str, Any] = {
    **ON,
    "model": {"hidden": [4], "learning_rate": 1e-6, "seed": 3},
    "labels": {
        "enabled": True,
        "challenger": {
            "enabled": True,
            "window": 50,
            "margin": 0.05,
            "model": {"learning_rate": 3e-2},
        },
    },
}


def test_a_better_challenger_is_promoted_served_and_checkpointed(tmp_path: Path) -> None:
    """The champion barely learns (learning rate 1e-6); the challenger, the same model at
    3e-2, learns the stream: the first block of paired late labels promotes it, an event,
    a metric and a log line; the champion then answers as well; a restart keeps both."""
    daemon, source, sink = started(tmp_path, SLOW_CHAMPION_FAST_CHALLENGER)

    # Both must have seen both classes before their answers can differ in quality.
    phase(daemon, source, range(16), flip=False)
    version = daemon.engine.version
    phase(daemon, source, range(16, 400), flip=False)
    promoted = [p for kind, p in sink.events if kind == "challenger_promoted"]
    assert promoted, daemon.challenger.view()
    first = promoted[0]
    assert first["challenger_accuracy"] - first["champion_accuracy"] > 0.05
    assert first["difference_lower_bound"] > 0.05
    assert value(daemon, "streamlearn_promotions_total") == len(promoted)
    assert daemon.engine.version > version
    # After the promotion the champion answers what the challenger learned.
    assert daemon.late_labels.served.accuracy(100) == 1.0
    daemon._publish_progress()
    live = daemon.progress.served
    assert live is not None and live["challenger"]["promotions"] == len(promoted)
    assert live["challenger"]["config"] == {"learning_rate": 3e-2}

    assert daemon.checkpoint("test")
    daemon.shutdown()
    loaded = FileCheckpointStore(tmp_path).load_latest()
    assert loaded is not None
    inspected = describe(loaded.path)["late_labels"]["challenger"]
    assert inspected["promotions"] == len(promoted)
    again = Source("in", [[]])
    again.add_topic(LABELS, [[]])
    second, _ = make(tmp_path, again, **SLOW_CHAMPION_FAST_CHALLENGER)
    assert second.start()
    assert second.challenger.promotions == len(promoted)
    assert second.challenger.engine is not None
    assert second.challenger.engine.version == inspected["version"]


def test_no_promotion_while_the_guard_holds_a_rollback(tmp_path: Path) -> None:
    """Flipped labels: the guard rolls back and holds. The challenger learned the flips too
    and agrees with them, so on the flipped labels it looks better than the rolled-back
    champion; it must not be promoted (the poison would be served again): no pair is
    scored while the guard holds, and the open block restarts at the rollback."""
    guard = {"enabled": True, "window": 20, "confirm_joins": 20, "max_hold_joins": 1000}
    challenger = {"enabled": True, "window": 50, "margin": 0.0, "model": {"seed": 1}}
    sections = {**ON, "labels": {"enabled": True, "guard": guard, "challenger": challenger}}
    daemon, source, sink = started(tmp_path, sections)

    phase(daemon, source, range(400), flip=False)
    promoted_before = daemon.challenger.promotions
    phase(daemon, source, range(400, 800), flip=True)
    assert daemon.guard.rollbacks == 1 and daemon.guard.guard.holding
    kinds = [kind for kind, _ in sink.events]
    rolled_back = kinds.index("served_model_rolled_back")
    assert "challenger_promoted" not in kinds[rolled_back:]
    assert daemon.challenger.promotions == promoted_before
    assert daemon.challenger.judge.n == 0  # nothing scored during the hold


def _promotions(sink: MemorySink) -> list[dict[str, Any]]:
    return [payload for kind, payload in sink.events if kind == "challenger_promoted"]


def test_a_challenger_is_promoted_again_when_it_pulls_ahead_again(tmp_path: Path) -> None:
    """A promotion moves the challenger's state, not its configuration: the champion
    (learning rate 1e-6) learns on slowly from the promoted state. When the concept then
    flips, the challenger (3e-2) learns the new one and the champion cannot: a later block
    promotes it again, on that block's own figures. Each promotion is its own event at a
    higher model version, counted once."""
    daemon, source, sink = started(tmp_path, SLOW_CHAMPION_FAST_CHALLENGER)

    phase(daemon, source, range(300), flip=False)
    first = _promotions(sink)
    assert first, daemon.challenger.view()
    phase(daemon, source, range(300, 800), flip=True)
    every = _promotions(sink)
    assert len(every) > len(first), daemon.challenger.view()
    versions = [p["model_version"] for p in every]
    assert versions == sorted(set(versions))  # each promotion a new version, never back
    later = every[len(first)]
    assert later["challenger_accuracy"] - later["champion_accuracy"] > 0.05
    assert value(daemon, "streamlearn_promotions_total") == len(every)
    assert daemon.challenger.promotions == len(every)


def test_the_challenger_adapts_and_forgets_what_the_champion_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Served rows the champion adapts on (adapt.on_requests) and samples it forgets
    (POST /v1/forget, an rls head) reach the challenger's engine too, the same rows and
    samples: it stays a shadow of the same stream. Forgets are mirrored with one expert
    each (experts.enabled false): only then do the two engines' expert ids correspond."""
    sections = {
        **ON,
        "model": {"head": "rls", "hidden": [4], "seed": 3},
        "experts": {"enabled": False},
        "adapt": {"on_requests": True},
        "labels": {"enabled": True, "challenger": {"enabled": True, "model": {"seed": 1}}},
    }
    daemon, source, _ = started(tmp_path, sections)
    phase(daemon, source, range(64), flip=False)
    shadow = daemon.challenger.engine
    assert shadow is not None
    adapted: list[list[list[float]]] = []
    forgotten: list[tuple[list[Sample], dict[str, Any]]] = []
    real_adapt, real_forget = shadow.adapt, shadow.forget

    def spy_adapt(rows: list[list[float]]) -> AdaptReport:
        adapted.append(rows)
        return real_adapt(rows)

    def spy_forget(samples: list[Sample], expert: str | None = None) -> dict[str, Any]:
        done = real_forget(samples, expert)
        forgotten.append((samples, done))
        return done

    monkeypatch.setattr(shadow, "adapt", spy_adapt)
    monkeypatch.setattr(shadow, "forget", spy_forget)

    rows = [[0.0, 1.0], [1.0, 0.0]] * 4
    assert daemon.inbox.offer_rows(rows) == 0
    daemon.step()
    assert adapted == [rows]

    samples = [Sample([0.0, 1.0], 0), Sample([1.0, 0.0], 1)]
    version = shadow.version
    answer = daemon.inbox.request_forget(samples, None)
    daemon.step()
    assert answer.result(timeout=5)["forgotten"] == 2  # the champion's answer
    [(seen, done)] = forgotten
    assert seen == samples and done["forgotten"] == 2
    assert shadow.version == version + 1


def test_a_forget_rebuilds_a_pooled_challenger_from_the_champion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With an expert pool each engine spawns and switches experts on its own drifts, so
    the champion's expert id names no known expert of the challenger: the forget is not
    mirrored; the challenger restarts from the champion's state (which no longer holds the
    samples), keeps its own configuration, its open block starts over, and a warning says so."""
    challenger = {"enabled": True, "window": 500, "model": {"seed": 1, "weight_decay": 1e-4}}
    sections = {
        **ON,
        "model": {"head": "rls", "hidden": [4], "seed": 3},
        "labels": {"enabled": True, "challenger": challenger},
    }
    daemon, source, _ = started(tmp_path, sections)
    phase(daemon, source, range(64), flip=False)
    shadow = daemon.challenger.engine
    assert shadow is not None and daemon.challenger.judge.n > 0
    mirrored: list[list[Sample]] = []
    monkeypatch.setattr(shadow, "forget", lambda samples, expert=None: mirrored.append(samples))

    with capture_logs() as logs:
        answer = daemon.inbox.request_forget([Sample([0.0, 1.0], 0)], None)
        daemon.step()
    assert answer.result(timeout=5)["forgotten"] == 1
    assert mirrored == []
    assert daemon.challenger.judge.n == 0
    [line] = [line for line in logs if line["event"] == "challenger_rebuilt"]
    assert line["log_level"] == "warning"
    champion, rebuilt = daemon.engine.pool, shadow.pool
    assert champion is not None and rebuilt is not None
    assert rebuilt.members.keys() == champion.members.keys()
    for id_, member in champion.members.items():
        ours = rebuilt.members[id_].expert.state_dict()["module"]
        for name, tensor in member.expert.state_dict()["module"].items():
            assert torch.equal(ours[name], tensor), name
        for group in rebuilt.members[id_].expert.optimizer.param_groups:  # type: ignore[attr-defined]
            assert group["weight_decay"] == 1e-4


def test_a_promotion_makes_the_promoted_state_the_guards_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard's candidate taken before a promotion is not what is served after it: the
    promoted state becomes the candidate, so the first state the guard confirms after a
    promotion is the promoted one (never an older one a rollback would undo it to)."""
    guard = {"enabled": True, "window": 20, "confirm_joins": 20, "max_hold_joins": 1000}
    challenger = {"enabled": True, "window": 50, "margin": 0.05, "model": {"learning_rate": 3e-2}}
    sections = {
        **ON,
        "model": {"hidden": [4], "learning_rate": 1e-6, "seed": 3},
        "labels": {"enabled": True, "guard": guard, "challenger": challenger},
    }
    daemon, source, _ = started(tmp_path, sections)
    keeper = daemon.guard
    promoted_versions: list[int] = []
    confirmed_after: list[int] = []
    real_promoted, real_scored = keeper.promoted, keeper.scored

    def spy_promoted() -> None:
        real_promoted()
        assert keeper._candidate is not None
        assert keeper._candidate["version"] == daemon.engine.version
        assert keeper.guard.has_candidate and keeper.guard._since_capture == []
        promoted_versions.append(daemon.engine.version)

    def spy_scored(right: bool) -> bool:
        good = keeper._good
        learn = real_scored(right)
        if promoted_versions and keeper._good is not None and keeper._good is not good:
            confirmed_after.append(int(keeper._good["version"]))
        return learn

    monkeypatch.setattr(keeper, "promoted", spy_promoted)
    monkeypatch.setattr(keeper, "scored", spy_scored)
    phase(daemon, source, range(400), flip=False)
    assert promoted_versions, daemon.challenger.view()
    assert confirmed_after and confirmed_after[0] == promoted_versions[0]


def test_a_promotion_keeps_the_champions_optimizer_settings(tmp_path: Path) -> None:
    """A promotion moves the challenger's weights and per-parameter optimizer state, not
    its hyper-parameters: the champion (SGD, no momentum, no weight decay) keeps them after
    a challenger with momentum 0.9 and weight decay 1e-4 is promoted into it."""
    challenger = {
        "enabled": True,
        "window": 50,
        "margin": 0.05,
        "model": {"learning_rate": 3e-2, "momentum": 0.9, "weight_decay": 1e-4},
    }
    champion = {"hidden": [4], "optimizer": "sgd", "learning_rate": 1e-6, "seed": 3}
    sections = {
        **ON,
        "model": champion,
        "labels": {"enabled": True, "challenger": challenger},
    }
    daemon, source, sink = started(tmp_path, sections)
    phase(daemon, source, range(400), flip=False)
    assert _promotions(sink), daemon.challenger.view()
    assert daemon.engine.pool is not None and daemon.challenger.engine is not None
    for member in daemon.engine.pool.members.values():
        for group in member.expert.optimizer.param_groups:  # type: ignore[attr-defined]
            assert (group["momentum"], group["weight_decay"]) == (0.0, 0.0)
            factor = member.expert._step_factor  # type: ignore[attr-defined]
            assert group["lr"] == pytest.approx(1e-6 * factor)  # adaptive batches' factor
    shadow = daemon.challenger.engine.pool
    assert shadow is not None
    for member in shadow.members.values():
        for group in member.expert.optimizer.param_groups:  # type: ignore[attr-defined]
            assert (group["momentum"], group["weight_decay"]) == (0.9, 1e-4)
