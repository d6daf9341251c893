"""The boundaries between streamlearn's parts, as small ``typing.Protocol``s.

This module is the one place these protocols are defined; each says what its callers
really use, no more. Every implementation keeps its state as a plain ``state_dict``
(tensors, numbers, strings, lists and dicts) so checkpoints load with
``torch.load(weights_only=True)``. :mod:`streamlearn.testing` checks the promises that
types cannot state (``check_source``, ``check_sink``, ``check_expert``, ``check_detector``,
``check_checkpoint_store``, ``check_adapt_method``).

**How an implementation is held to its protocol.** Protocols are structural: nothing fails
when a class drifts away from one until a caller is type-checked against it, and a
module-level ``_: type[Source] = KafkaSource`` does not work for protocols with properties
(mypy refuses a protocol as ``type[...]``). So every implementation module ends with a
function, seen only by mypy, that returns an instance as its protocol::

    if TYPE_CHECKING:  # mypy holds KafkaSource to Source (see streamlearn.core.protocols)

        def _conforms(source: KafkaSource) -> Source:
            return source

A missing member or a wrong signature is then a mypy error in the implementation's own
module, and the code costs nothing at run time. User code named in settings
(``model.factory``, ``drift.detector``, ``adapt.method``) is checked for the members when it
is built (:func:`streamlearn.core.extensions.missing_members`), and by the checks above in its
own tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    from torch import Tensor, nn

from streamlearn.core.types import (
    DeadLetter,
    DriftAlarm,
    DriftSignal,
    LoadedCheckpoint,
    Offsets,
    Prediction,
    Record,
    TopicPartition,
)

StateDict = dict[str, Any]


class Source(Protocol):
    """Ordered, replayable, seekable input; the daemon's learner thread is its only caller.

    Offsets are Kafka's: the next one to read. Commits carry a short metadata string (the
    daemon writes its lineage id there).
    """

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """At most ``max_records`` records, each partition's in offset order."""
        ...

    def seek(self, positions: Mapping[TopicPartition, int]) -> None:
        """The next polls read each given partition from its given offset."""
        ...

    def commit(self, positions: Offsets, metadata: str = "") -> None:
        """Record the group's position (may complete asynchronously)."""
        ...

    def committed(self, tp: TopicPartition) -> tuple[int, str] | None:
        """The group's committed offset of ``tp`` and its metadata; None if none or unknown."""
        ...

    def pause(self) -> None:
        """Polls return no records until :meth:`resume`."""
        ...

    def resume(self) -> None: ...

    def highwater(self, tp: TopicPartition) -> int | None:
        """The partition's end offset as last seen; None before anything was fetched."""
        ...

    def close(self, commit: Offsets | None = None) -> None:
        """Leave, committing ``commit`` first (under the metadata of the last commit)."""
        ...


class Sink(Protocol):
    """Where predictions, events and dead letters go. ``flush`` is True once all landed.

    ``pending`` counts outputs that failed to land and wait for ``retry`` (or ``flush``) to
    send them again; the daemon pauses input while it is at ``kafka.max_pending_outputs``.
    """

    def predictions(self, items: list[Prediction]) -> None: ...
    def dead_letters(self, items: list[DeadLetter]) -> None: ...
    def event(self, kind: str, payload: Mapping[str, Any]) -> None: ...
    @property
    def pending(self) -> int: ...
    def retry(self) -> None: ...
    def flush(self, timeout_s: float) -> bool: ...
    def close(self) -> None: ...


class Expert(Protocol):
    """A batched learner: tensors in, tensors out. ``predict`` never changes its state."""

    @property
    def module(self) -> nn.Module | None:
        """The network test-time adaptation and frozen serving work on; None when the
        expert is not a torch module, then it is never adapted (predict must equal its
        forward pass in eval mode, squeezed for one output)."""
        ...

    @property
    def skipped(self) -> str | None:
        """Why the last learn step was skipped or undone by the expert's guard, e.g.
        'loss', 'gradient', 'weights' (the closed-form heads: also 'features',
        'covariance'); None when it went through or the expert has no guard."""
        ...

    def predict(self, x: Tensor) -> Tensor:
        """Outputs for the batch ``x``; never changes the expert's state."""
        ...

    def learn(self, x: Tensor, y: Tensor) -> Tensor:
        """One step on the batch; each sample's loss (a 1-D tensor)."""
        ...

    def state_dict(self) -> StateDict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


@runtime_checkable
class StepScaling(Protocol):
    """What an :class:`Expert` may also offer: its step size scaled with the batch.

    Under a backlog the daemon learns in larger batches (``engine.lag_budget_s``) and asks
    every expert that has this method for ``factor`` times its configured step size (the
    square-root rule, ``daemon/batching.py``); 1.0 puts it back. An expert without it learns
    larger batches at its own step size. ``NeuralExpert`` has it.
    """

    def scale_step(self, factor: float) -> None: ...


@runtime_checkable
class WarmStarted(Protocol):
    """What an :class:`Expert` may also offer: a hook run after a spawn copied another
    expert's state into it (``experts.spawn: warm_start``). A drift was just detected, so
    an expert that keeps a confidence in what it learned (the Kalman head's covariance) can
    drop it and learn the new regime at full speed, keeping the copied weights as its start.
    """

    def after_warm_start(self) -> None: ...


class DriftDetector(Protocol):
    """A sequential change test over one expert's losses: what the drift monitor uses.

    ``update`` takes one value and says NONE, WARNING or DRIFT. ``update_many`` gives the
    same signals for a batch, reporting each DRIFT and each WARNING that follows a
    non-WARNING, by position in the batch. Its state must be plain data, so it checkpoints
    with the rest.
    """

    def update(self, value: float) -> DriftSignal: ...
    def update_many(self, values: npt.NDArray[np.float64]) -> list[DriftAlarm]: ...
    @property
    def statistic(self) -> float:
        """How near the test is to an alarm: 0 calm, 1 at the drift threshold."""
        ...

    def rearm(self, cooldown: int = 0) -> None:
        """The expert behind the values changed: ignore ``cooldown`` values, then learn
        the new level rather than take it for a drift."""
        ...

    def reset(self) -> None:
        """Forget everything, as if just built."""
        ...

    def state_dict(self) -> StateDict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


#: The name ``DriftDetector`` had while it lacked the batch path (same protocol now).
BatchDriftDetector = DriftDetector


class CheckpointStore(Protocol):
    """Durable, atomic, checksummed storage of the whole learning state, as files."""

    def save(self, state: StateDict) -> Path:
        """Write ``state`` durably; the file it is in once visible under its final name."""
        ...

    def load_latest(self) -> LoadedCheckpoint | None:
        """The newest checkpoint that verifies (damaged newer ones skipped), or None."""
        ...

    def files(self) -> list[Path]:
        """Complete checkpoint files, oldest first."""
        ...

    def remove_partial(self) -> list[Path]:
        """Delete what interrupted saves left behind; returns what was removed."""
        ...

    def protect(self, path: Path | None) -> None:
        """Keep ``path`` past pruning until another is protected (None: none is): a group of
        replicas keeps the last id every replica saved while newer ones are not saved by all."""
        ...


class AdaptMethod(Protocol):
    """A test-time adaptation method for one expert's network.

    It must not touch the module before ``begin`` has named it and its anchor.
    """

    def begin(self, module: nn.Module, anchor: Mapping[str, Tensor]) -> None:
        """Start over from ``module`` as it is now; ``anchor`` is its state to restore to."""
        ...

    def step(self, module: nn.Module, x: Tensor, keep: Tensor, n_classes: int) -> int:
        """Adapt on ``x``; only rows where ``keep`` is true may teach. Returns rows used."""
        ...

    def state_dict(self) -> StateDict: ...
    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...
