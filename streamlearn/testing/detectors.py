"""What every drift detector must do: the drift monitor and the checkpoints rely on all of it.

:func:`check_detector` holds a detector (``drift.detector``, built-in or yours) to these
promises, each on a stream it must alarm on:

- **verdicts**: ``update`` returns a :class:`~streamlearn.core.types.DriftSignal`, and
  ``statistic`` is finite and within 0 (calm) and 1 (the drift threshold) after every value;
- **alarms**: the stream raises at least one DRIFT (a test that never fires checks nothing);
- **determinism**: two detectors built alike give the same signals and statistics;
- **batches**: ``update_many`` over batches of any size reports exactly the events of
  ``update`` value by value (each DRIFT, and each WARNING after a non-WARNING, at its
  position), and ends at the same statistic;
- **state**: ``state_dict`` survives ``torch.save`` and ``torch.load(weights_only=True)``,
  and a new detector loaded with it (early, near an alarm, right after a drift) has the same
  statistic and goes on with the same signals;
- **reset**: ``reset`` reads calm (statistic 0) and then behaves as a new detector;
- **rearm**: ``rearm(cooldown)`` reads calm, the ``cooldown`` values after it raise nothing
  whatever they are, and a stable stream at a new level (5 standard deviations up, same
  noise, a quarter of the stream long) after them raises no DRIFT: it is learned as the new
  normal (the monitor rearms when the expert behind the losses changes);
- **constant**: a constant stream raises no WARNING or DRIFT (a perfect expert's zero
  losses must not alarm on their first rounding error).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from streamlearn.core.drift.base import events_of
from streamlearn.core.protocols import DriftDetector
from streamlearn.core.types import DriftAlarm, DriftSignal
from streamlearn.testing.common import promise, roundtrip

Floats = npt.NDArray[np.float64]

BATCH_SIZES = (1, 3, 32, 257, 1024)  # odd sizes: batch edges land everywhere
COOLDOWN = 50  # values rearm is asked to ignore
WILD = 50.0  # standard deviations: what the ignored values may look like


def drifting_stream(n: int = 8_000, seed: int = 0) -> Floats:
    """Standard normal values with the mean at 0, then 1.5, 0 and 3 by quarters: every
    phase of a detector gets exercised and each rise should alarm."""
    rng = np.random.default_rng(seed)
    quarter = n // 4
    return rng.normal(np.repeat([0.0, 1.5, 0.0, 3.0], quarter), 1.0)


@dataclass
class _Trace:
    signals: list[DriftSignal] = field(default_factory=list)
    statistics: list[float] = field(default_factory=list)

    @property
    def first_drift(self) -> int:
        return self.signals.index(DriftSignal.DRIFT)


def check_detector(
    make: Callable[[], DriftDetector], values: Sequence[float] | Floats | None = None
) -> None:
    """Raise AssertionError naming the first broken promise of the detectors ``make`` builds.

    ``values``: a stream the detector must alarm on (default :func:`drifting_stream`, made
    for ``warmup`` and ``refractory`` of a few hundred values each).
    """
    xs = drifting_stream() if values is None else np.asarray(values, dtype=np.float64)
    with promise("verdicts"):
        reference = _trace(make(), xs)
        _verdicts_in_range(reference)
    with promise("alarms"):
        assert DriftSignal.DRIFT in reference.signals, "no DRIFT on a stream that drifts"
    with promise("determinism"):
        again = _trace(make(), xs)
        assert again.signals == reference.signals, "two detectors built alike differ"
        assert again.statistics == reference.statistics, "statistics of twins differ"
    with promise("batches"):
        _batches_agree(make(), xs, reference)
    with promise("state"):
        _state_round_trips(make, xs, reference)
    with promise("reset"):
        _reset_forgets(make(), xs, reference)
    with promise("rearm"):
        _rearm_learns_the_new_level(make(), xs, reference)
    with promise("constant"):
        calm = _trace(make(), np.full(len(xs) // 2, float(np.mean(xs))))
        assert set(calm.signals) == {DriftSignal.NONE}, "a constant stream raised an alarm"


def _trace(detector: DriftDetector, xs: Floats) -> _Trace:
    trace = _Trace()
    for value in xs.tolist():
        trace.signals.append(detector.update(value))
        trace.statistics.append(detector.statistic)
    return trace


def _verdicts_in_range(trace: _Trace) -> None:
    for i, (signal, stat) in enumerate(zip(trace.signals, trace.statistics, strict=True)):
        assert isinstance(signal, DriftSignal), f"update returned {signal!r} at value {i}"
        assert np.isfinite(stat) and 0.0 <= stat <= 1.0, f"statistic {stat} at value {i}"


def _batches_agree(detector: DriftDetector, xs: Floats, reference: _Trace) -> None:
    sizes = np.random.default_rng(1).choice(BATCH_SIZES, size=len(xs))
    found: list[DriftAlarm] = []
    start = 0
    for size in sizes.tolist():
        if start >= len(xs):
            break
        batch = detector.update_many(xs[start : start + size])
        found += [DriftAlarm(a.index + start, a.signal) for a in batch]
        start += size
    expected = events_of(reference.signals)
    assert found == expected, f"update_many reported {found[:5]}..., update {expected[:5]}..."
    end = reference.statistics[-1]
    assert np.isclose(detector.statistic, end, rtol=1e-9, atol=1e-12), (
        f"statistic {detector.statistic} after the batches, {end} value by value"
    )


def _peak(reference: _Trace) -> int:
    """How many values lead to the highest statistic before the first drift."""
    first = reference.first_drift
    return int(np.argmax(reference.statistics[:first])) + 1 if first else 0


def _cuts(reference: _Trace, n: int) -> list[int]:
    """Early on, at the highest statistic before the first drift, right after it."""
    cuts = {max(1, n // 16), max(1, _peak(reference)), reference.first_drift + 1}
    return sorted(cut for cut in cuts if cut < n)


def _state_round_trips(make: Callable[[], DriftDetector], xs: Floats, reference: _Trace) -> None:
    original = make()
    done = 0
    for cut in _cuts(reference, len(xs)):
        _trace(original, xs[done:cut])
        done = cut
        state = roundtrip(original.state_dict())
        restored = make()
        restored.load_state_dict(state)
        assert restored.statistic == reference.statistics[cut - 1], (
            f"a restored detector reads {restored.statistic}, the original "
            f"{reference.statistics[cut - 1]} (after {cut} values)"
        )
        rest = _trace(restored, xs[cut:])
        assert rest.signals == reference.signals[cut:], (
            f"a detector restored after {cut} values signals differently"
        )


def _reset_forgets(detector: DriftDetector, xs: Floats, reference: _Trace) -> None:
    _trace(detector, xs)
    detector.reset()
    assert detector.statistic == 0.0, f"statistic {detector.statistic} right after reset"
    assert _trace(detector, xs).signals == reference.signals, "reset left something behind"


def _rearm_learns_the_new_level(detector: DriftDetector, xs: Floats, reference: _Trace) -> None:
    _trace(detector, xs[: _peak(reference)])  # the statistic as high as it gets
    detector.rearm(cooldown=COOLDOWN)
    assert detector.statistic == 0.0, f"statistic {detector.statistic} right after rearm"
    mean, spread = float(np.mean(xs)), float(np.std(xs)) or 1.0
    wild = mean + WILD * spread * np.resize([1.0, -1.0], COOLDOWN)
    ignored = _trace(detector, wild).signals
    assert set(ignored) == {DriftSignal.NONE}, (
        f"the {COOLDOWN} values after rearm(cooldown={COOLDOWN}) raised {set(ignored)}"
    )
    noise = np.random.default_rng(2).normal(0.0, spread, len(xs) // 4)
    stable = _trace(detector, mean + 5 * spread + noise).signals
    assert DriftSignal.DRIFT not in stable, "after rearm a stable new level raised a DRIFT"


__all__ = ["check_detector", "drifting_stream"]
