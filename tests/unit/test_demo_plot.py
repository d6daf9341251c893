"""The demo's run picture: expert spans from pool events, and a PNG that is really written."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from streamlearn.app.demo_plot import expert_spans, plot_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pool_event(kind: str, expert: str, sample: int) -> dict[str, object]:
    return {
        "kind": kind,
        "expert": expert,
        "previous": None,
        "sample": sample,
        "time": 0.0,
        "scores": {},
    }


def test_spans_follow_spawns_and_switches_from_expert_zero() -> None:
    events = [
        pool_event("keep", "0", 3_100),  # a false alarm: the same expert stays
        pool_event("spawn", "1", 10_400),
        pool_event("spawn", "2", 20_300),
        pool_event("prune", "1", 29_000),  # names the removed expert, not the active
        pool_event("spawn", "3", 29_000),
        pool_event("switch", "0", 30_250),
    ]
    assert expert_spans(events, 40_000) == [
        (0, 10_400, "0"),
        (10_400, 20_300, "1"),
        (20_300, 29_000, "2"),
        (29_000, 30_250, "3"),
        (30_250, 40_000, "0"),
    ]


def test_spans_skip_empty_ones_and_stop_at_the_end() -> None:
    events = [
        pool_event("spawn", "1", 0),  # at the very start: expert 0 had no span
        pool_event("switch", "1", 500),  # already active: no new span
        pool_event("switch", "0", 2_000),
        pool_event("spawn", "2", 9_000),
    ]  # after the end (events are newer than it)
    assert expert_spans(reversed(events), 5_000) == [(0, 2_000, "1"), (2_000, 5_000, "0")]


def test_no_events_is_expert_zero_throughout_and_nothing_learned_is_no_span() -> None:
    assert expert_spans([], 1_234) == [(0, 1_234, "0")]
    assert expert_spans([], 0) == []


def test_the_plot_is_a_png_with_drifts_spans_and_boundaries(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    accuracy = [(0, math.nan)] + [
        (x, 0.9 - 0.3 * math.exp(-((x % 1_000) / 150)) * (x >= 1_000)) for x in range(50, 3_000, 50)
    ]
    spans = expert_spans([pool_event("spawn", "1", 1_150), pool_event("switch", "0", 2_200)], 3_000)
    path = plot_run(
        tmp_path / "sub" / "run.png",
        "sea, accuracy 0.871",
        accuracy,
        drifts=[1_060, 2_080],
        spans=spans,
        boundaries=[980, 1_960],
    )
    data = path.read_bytes()
    assert path == tmp_path / "sub" / "run.png"
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) > 20_000  # a drawn figure, not an empty canvas


def test_an_empty_run_still_draws(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = plot_run(tmp_path / "empty.png", "nothing learned", [], [], [], [])
    assert path.read_bytes().startswith(PNG_SIGNATURE)
