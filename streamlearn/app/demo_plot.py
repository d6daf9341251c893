"""The demo's picture of a run: rolling accuracy over the stream, with drift alarms, the
expert active over each span and the true concept changes, so detection delay and expert
reuse can be seen at a glance.

matplotlib is imported only when a plot is drawn: it is an optional extra (``demo``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

Span = tuple[int, int, str]  # (first sample, end sample, expert id)

# The pool decisions that change which expert is active; keep leaves it, and prune and
# merge name the expert removed (always followed by the spawn that needed the room).
_ACTIVATING = ("spawn", "switch")


def expert_spans(events: Iterable[Mapping[str, Any]], end: int, first: str = "0") -> list[Span]:
    """Which expert was active over which span of samples learned, from pool events.

    ``first`` is active from sample 0; spans are half-open ``[start, end)``, in order, and
    none is empty.
    """
    spans: list[Span] = []
    start, active = 0, first
    for event in sorted(
        (e for e in events if e["kind"] in _ACTIVATING), key=lambda e: int(e["sample"])
    ):
        at = min(int(event["sample"]), end)
        if event["expert"] == active:
            continue
        if at > start:
            spans.append((start, at, active))
        start, active = at, str(event["expert"])
    if end > start:
        spans.append((start, end, active))
    return spans


def plot_run(
    path: Path,
    title: str,
    accuracy: Sequence[tuple[int, float]],
    drifts: Sequence[int],
    spans: Sequence[Span],
    boundaries: Sequence[int],
) -> Path:
    """Write the run as a PNG at ``path``: accuracy points (samples learned, accuracy),
    drift alarm positions, expert spans and concept boundaries, all in samples learned."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # A bare Figure on the Agg canvas: no pyplot, so no global backend or figure state.
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    top, strip = fig.subplots(2, 1, sharex=True, height_ratios=[12, 1])
    colours = _expert_colours(spans)
    _draw_accuracy(top, accuracy, drifts, spans, boundaries, colours)
    _draw_strip(strip, spans, boundaries, colours)
    top.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _expert_colours(spans: Sequence[Span]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    order = list(dict.fromkeys(expert for _, _, expert in spans))
    return {expert: palette(i % 10) for i, expert in enumerate(order)}


def _draw_accuracy(
    ax: Any,
    accuracy: Sequence[tuple[int, float]],
    drifts: Sequence[int],
    spans: Sequence[Span],
    boundaries: Sequence[int],
    colours: Mapping[str, Any],
) -> None:
    for start, end, expert in spans:
        ax.axvspan(start, end, color=colours[expert], alpha=0.12, linewidth=0)
    # The true changes are drawn over the alarms: a fast alarm would hide them otherwise.
    for i, at in enumerate(boundaries):
        ax.axvline(
            at,
            color="black",
            linestyle=":",
            linewidth=1.4,
            zorder=3,
            label="concept change (true)" if i == 0 else None,
        )
    for i, at in enumerate(drifts):
        ax.axvline(
            at,
            color="tab:red",
            linewidth=1.6,
            alpha=0.8,
            zorder=2,
            label="drift alarm (+ samples after the change)" if i == 0 else None,
        )
        delay = _delay(at, boundaries)
        if delay is not None:
            ax.annotate(
                f"+{delay}",
                (at, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                color="tab:red",
                fontsize="small",
            )
    points = [(x, y) for x, y in accuracy if y == y]  # NaN before the first scored sample
    if points:
        xs, ys = zip(*points, strict=True)
        # Markers show where progress was sampled: the line between them is drawn, not seen.
        ax.plot(
            xs,
            ys,
            color="tab:blue",
            linewidth=1.6,
            marker="o",
            markersize=2.5,
            label="rolling accuracy (last 1k)",
        )
    ax.set_ylabel("accuracy")
    ax.set_ylim(min([0.4, *(y for _, y in points)]) - 0.02, 1.02)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize="small", framealpha=0.9)


def _delay(drift: int, boundaries: Sequence[int]) -> int | None:
    """Samples from the latest true change up to this alarm; None before the first."""
    before = [b for b in boundaries if b <= drift]
    return drift - max(before) if before else None


def _draw_strip(
    ax: Any, spans: Sequence[Span], boundaries: Sequence[int], colours: Mapping[str, Any]
) -> None:
    total = spans[-1][1] if spans else 0
    for start, end, expert in spans:
        ax.axvspan(start, end, color=colours[expert], alpha=0.85, linewidth=0)
        if end - start < total * 0.015:
            continue  # too narrow for its label to be read; the colour still shows
        ax.text(
            (start + end) / 2,
            0.5,
            expert,
            ha="center",
            va="center",
            fontsize="medium",
            color="white",
            fontweight="bold",
            clip_on=True,
        )
    for at in boundaries:
        ax.axvline(at, color="black", linestyle=":", linewidth=1.2)
    ax.set_yticks([0.5], ["expert"])
    ax.set_ylim(0, 1)
    ax.set_xlabel("stream position (samples learned)")
    if spans:
        ax.set_xlim(0, spans[-1][1])
