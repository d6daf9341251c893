"""Accuracy, recovery after a recurrence, and how well experts line up with regimes.

Pure numpy over per-sample arrays: ``correct`` (0/1 or bool, test-then-train), ``regime``
(the true regime, int), ``routed`` / ``active`` (the expert a learner used, -1 for none)
and a stream's ``segments`` ((start, end, regime), end exclusive, in order).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EPS = 1e-12  # so that 44/50 counts as reaching 0.9 - 0.02 despite float rounding


@dataclass(frozen=True)
class Recovery:
    """How fast a learner got back to its old accuracy when a regime came back."""

    regime: int
    start: int  # first sample of the recurring visit
    earlier: float  # accuracy over the last ``window`` samples of the previous visit
    samples: int  # samples into the visit until the rolling accuracy reached earlier - tol
    recovered: bool  # False: never reached it; samples is then the visit's length


def prequential_accuracy(correct: np.ndarray) -> float:
    """Test-then-train accuracy: every sample was predicted before it was learned."""
    values = np.asarray(correct, dtype=np.float64)
    return float(values.mean()) if values.size else float("nan")


def rolling(correct: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` samples (fewer at the start: no padding, so
    the first values are means of what was seen, not pulled towards zero)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    values = np.asarray(correct, dtype=np.float64)
    sums = np.concatenate(([0.0], np.cumsum(values)))
    ends = np.arange(1, values.size + 1)
    starts = np.maximum(0, ends - window)
    return (sums[ends] - sums[starts]) / (ends - starts)


def recoveries(
    correct: np.ndarray,
    segments: Sequence[tuple[int, int, int]],
    window: int = 200,
    tolerance: float = 0.02,
    mode: str = "forward",
) -> list[Recovery]:
    """For every visit whose regime was seen before: samples until the accuracy is back.

    ``earlier`` is the accuracy over the last ``window`` samples of the regime's previous
    visit, what the learner had reached. ``mode`` says how "back" is judged:

    - ``forward`` (the headline figure): ``samples`` is the first position in the visit
      from which the accuracy over the next ``window`` samples of the visit is at least
      ``earlier - tolerance``: how long until the learner performs at its old level again.
    - ``trailing``: the rolling accuracy of the visit, restarted at its start, counted
      once ``min(window, 50)`` samples were seen; ``samples`` is the number seen when it
      first reaches ``earlier - tolerance``. Errors made before the recovery stay in the
      window for ``window`` more samples, so this cannot go much below ``window``.
    """
    values = np.asarray(correct, dtype=np.float64)
    last: dict[int, tuple[int, int]] = {}
    out = []
    for start, end, regime in segments:
        if regime in last:
            before_start, before_end = last[regime]
            earlier = float(values[max(before_start, before_end - window) : before_end].mean())
            judge = _forward if mode == "forward" else _trailing
            out.append(judge(values[start:end], regime, start, earlier, window, tolerance))
        last[regime] = (start, end)
    return out


def _forward(
    visit: np.ndarray, regime: int, start: int, earlier: float, window: int, tolerance: float
) -> Recovery:
    sums = np.concatenate(([0.0], np.cumsum(visit)))
    begins = np.arange(max(1, visit.size - min(window, 50) + 1))
    ends = np.minimum(begins + window, visit.size)
    reached = (sums[ends] - sums[begins]) / (ends - begins) >= earlier - tolerance - EPS
    if reached.any():
        return Recovery(regime, start, earlier, int(np.argmax(reached)), True)
    return Recovery(regime, start, earlier, int(visit.size), False)


def _trailing(
    visit: np.ndarray, regime: int, start: int, earlier: float, window: int, tolerance: float
) -> Recovery:
    seen = min(window, 50)
    reached = rolling(visit, window)[seen - 1 :] >= earlier - tolerance - EPS
    if reached.any():
        return Recovery(regime, start, earlier, seen + int(np.argmax(reached)), True)
    return Recovery(regime, start, earlier, int(visit.size), False)


def median_recovery(recs: Sequence[Recovery]) -> float:
    """Median samples to recover (unrecovered visits count as their whole length)."""
    return float(np.median([r.samples for r in recs])) if recs else float("nan")


def per_regime_accuracy(correct: np.ndarray, regime: np.ndarray) -> dict[int, float]:
    """Accuracy on each regime's samples, all its visits together."""
    values = np.asarray(correct, dtype=np.float64)
    regime = np.asarray(regime)
    return {int(r): float(values[regime == r].mean()) for r in np.unique(regime)}


def _majority_regime(experts: np.ndarray, regime: np.ndarray) -> np.ndarray:
    """Per sample, the regime its expert is most often used on (ties: the lowest regime);
    -1 where no expert was used."""
    out = np.full(experts.shape, -1, dtype=np.int64)
    used = experts >= 0
    if not used.any():
        return out
    ids, index = np.unique(experts[used], return_inverse=True)
    counts = np.zeros((ids.size, int(regime.max()) + 1), dtype=np.int64)
    np.add.at(counts, (index, regime[used]), 1)
    out[used] = counts.argmax(axis=1)[index]
    return out


def routing_accuracy(
    routed: np.ndarray, regime: np.ndarray, mask: np.ndarray | None = None
) -> float:
    """Fraction of samples routed to an expert that belongs to their true regime.

    An expert belongs to the regime it is most often routed on; that mapping is taken over
    all samples, and ``mask`` (bool, same length) then picks the samples that are scored.
    Samples routed to no expert (-1) count as wrong.
    """
    routed = np.asarray(routed, dtype=np.int64)
    regime = np.asarray(regime, dtype=np.int64)
    hit = _majority_regime(routed, regime) == regime
    if mask is not None:
        hit = hit[np.asarray(mask, dtype=bool)]
    return float(hit.mean()) if hit.size else float("nan")


def experts_vs_regimes(active: np.ndarray, regime: np.ndarray) -> dict[str, float | int]:
    """How the experts a learner used line up with the true regimes.

    ``experts``: distinct experts used (-1 not counted); ``regimes``: distinct regimes;
    ``purity``: fraction of samples whose active expert's majority regime is the true one
    (-1 counts as wrong); ``regimes_per_expert``: mean number of distinct regimes an expert
    was active on (1.0: none is shared); ``experts_per_regime``: mean number of distinct
    experts active on a regime (1.0: none was split, or relearned from scratch).
    """
    active = np.asarray(active, dtype=np.int64)
    regime = np.asarray(regime, dtype=np.int64)
    used = active >= 0
    pairs = np.unique(np.stack([active[used], regime[used]]), axis=1)
    experts = np.unique(pairs[0]).size
    regimes = np.unique(regime).size
    return {
        "experts": experts,
        "regimes": regimes,
        "purity": routing_accuracy(active, regime),
        "regimes_per_expert": pairs.shape[1] / experts if experts else float("nan"),
        "experts_per_regime": (
            pairs.shape[1] / np.unique(pairs[1]).size if experts else float("nan")
        ),
    }
