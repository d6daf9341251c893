"""Test-time adaptation of the pool's experts on unlabeled rows, one expert at a time.

Each expert gets its own method state, guard and anchor. The *anchor* is the expert's state
as its last labeled learning left it: labeled learning only marks the anchor stale, and the
next adaptation step takes a fresh copy, so labeled learning and adaptation never pull the
same weights in two directions at once. Every guard reset returns the expert to its anchor.

Rows are gathered per expert until ``adapt.batch_size`` of them are waiting. They then
enter the expert's class-balanced memory (``memory.py``), and one step adapts on the
memory, not on the new rows alone. Waiting rows are checkpointed with the rest.

The method is a built-in one (:data:`METHODS`) or a user's, ``adapt.method:
"package.module:name"``: a class or function called as ``name(settings=<the adapt
section>, generator=<the adapter's torch.Generator>)`` that returns an
:class:`~streamlearn.core.protocols.AdaptMethod`. Like the built-in ones it is called once per
expert and again after every guard reset (a fresh method: optimizer state from before a
collapse goes too); its randomness should come from ``generator``, which is seeded and
checkpointed, so runs replay. It is loaded, and one is built and checked, when the adapter
is made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from streamlearn.core.adapt.augment import Augmenter
from streamlearn.core.adapt.base import (
    AdaptMethod,
    norm_statistics,
    normalized_entropy,
    statistics_mode,
    update_norm_statistics,
)
from streamlearn.core.adapt.cotta import CoTTA
from streamlearn.core.adapt.guards import Guard
from streamlearn.core.adapt.memory import BalancedMemory
from streamlearn.core.adapt.norm import NormStats
from streamlearn.core.adapt.settings import AdaptSettings
from streamlearn.core.adapt.tent import Tent
from streamlearn.core.experts.member import Member
from streamlearn.core.experts.selector import rows_by_expert
from streamlearn.core.extensions import build_checked, is_spec, load_object
from streamlearn.core.models import batch_norms
from streamlearn.core.protocols import StateDict

METHODS = ("norm", "tent", "cotta")
RESET_REASONS = ("entropy", "marginal", "guard_set", "periodic", "input_shift")


@dataclass(slots=True)
class AdaptReport:
    """What adaptation did during one engine call: the daemon's metrics."""

    adapted: int = 0  # rows that took part in an adaptation step
    skipped: int = 0  # rows the entropy filter kept out of the gradient
    resets: list[tuple[str, str]] = field(default_factory=list)  # (expert, reason)
    steps: int = 0  # adaptation steps and resets: each changes the served weights
    entropy: float | None = None  # mean normalized prediction entropy of the last step


@dataclass(slots=True)
class _Expertise:
    """One expert's adaptation state."""

    method: AdaptMethod
    guard: Guard
    memory: BalancedMemory
    anchor: dict[str, Tensor] | None = None
    stale: bool = True  # labeled learning happened since the anchor was taken
    pending: list[Tensor] = field(default_factory=list)
    shifted: bool = False  # the inputs changed domain: restart at the next step
    rewarm: int | None = None  # steps since the restart, while statistics re-estimate fast

    @property
    def waiting(self) -> int:
        return sum(rows.shape[0] for rows in self.pending)


class Adapter:
    """Adapts each expert on unlabeled rows behind its own guard, and resets it to its anchor.

    Learner thread only: it changes the experts' weights in place, so serving sees its work
    only through the next snapshot.
    """

    def __init__(
        self,
        settings: AdaptSettings,
        method: str,
        seed: int,
        image_shape: Sequence[int] | None = None,
    ) -> None:
        if method not in METHODS and not is_spec(method):
            raise ValueError(f"adapt.method: {method!r} is not one of {METHODS} nor 'module:name'")
        self.settings = settings
        self.method = method
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self._user = None if method in METHODS else _user_method(method, settings, seed)
        self.augment = Augmenter(settings, image_shape, self.generator)
        self.experts: dict[str, _Expertise] = {}

    def labeled(self, expert_id: str, x: Tensor, y: Tensor) -> None:
        """``expert_id`` learned these labeled rows (``x`` as it saw them): its anchor moves,
        its guard set grows."""
        state = self._state(expert_id)
        state.stale = True
        if y.dtype == torch.long:
            state.guard.remember(x, y)

    def offer(
        self, expert_id: str, module: nn.Module, x: Tensor, n_classes: int, report: AdaptReport
    ) -> None:
        """Rows the expert answered; adapt once enough of them are waiting."""
        state = self._state(expert_id)
        state.pending.append(x.detach())
        if state.waiting < self.settings.batch_size:
            return
        rows = torch.cat(state.pending)
        state.pending = []
        self._step(expert_id, state, module, rows, n_classes, report)

    def offer_routed(
        self,
        members: Mapping[str, Member],
        x: Tensor,
        experts: Sequence[str],
        n_classes: int,
        report: AdaptReport,
    ) -> int:
        """Offer each routed expert its rows; the adaptation steps and resets taken."""
        before = report.steps
        for expert_id, rows in rows_by_expert(experts).items():
            member = members[expert_id]
            module = member.expert.module
            if module is None:
                continue  # an expert that is not a torch module: nothing to adapt
            steps = report.steps
            self.offer(expert_id, module, x[rows], n_classes, report)
            member.adaptations += report.steps - steps
        return report.steps - before

    def shifted(self) -> None:
        """The inputs changed domain (drift.input_shift): rows waiting are the old domain's
        and go; each expert restarts at its next step (``adapt.on_shift``)."""
        if self.settings.on_shift == "none":
            return
        for state in self.experts.values():
            state.pending = []
            state.shifted = True

    def switch_pending(self, expert_ids: Iterable[str]) -> bool:
        """Does a detected shift wait for its restart in one of ``expert_ids`` (the experts
        rows are routed to)? Then those rows should be adapted on before they are answered,
        so that they are not answered with the old domain's statistics (``Engine``).

        Only the routed experts count: ``shifted`` flags every expert, and the flag clears
        only in that expert's own step, so an expert no longer routed to (the one active
        before a pool switch) keeps it, and would otherwise turn every later batch around.
        """
        return any(
            (state := self.experts.get(expert_id)) is not None and state.shifted
            for expert_id in set(expert_ids)
        )

    def forget(self, alive: set[str]) -> None:
        """Drop the state of experts that left the pool."""
        for expert_id in set(self.experts) - alive:
            del self.experts[expert_id]

    def nbytes(self) -> int:
        """Memory held for adaptation: anchors, students and optimizer state, memories,
        guard sets and rows waiting."""
        return sum(_tensor_bytes(state) for state in self.state_dict()["experts"].values())

    def _step(
        self,
        expert_id: str,
        state: _Expertise,
        module: nn.Module,
        x: Tensor,
        n_classes: int,
        report: AdaptReport,
    ) -> None:
        if state.anchor is None or state.stale:
            self._anchor(state, module, n_classes)
        if state.shifted:
            state.shifted = False
            fit = self._best_statistics(state, module, x, n_classes)
            self._refit(expert_id, state, module, fit, report)
        elif self._served_off_scale(module, x):
            # A switch the detector did not see: the anchor's statistics where they fit
            # the rows, a restart where not. Not the entropy choice: on a class-sorted
            # stream the step's rows are one class, whose own statistics fit nothing, and
            # with the rows of the domain before in the batch they can still look surest.
            on_scale = self._anchor_entropy(state, module, x, n_classes) is not None
            self._refit(expert_id, state, module, "anchor" if on_scale else "own", report)
        entropy, predicted = self._predictions(module, x, n_classes)
        pull = self._anchor_surer(state, module, x, entropy, n_classes)
        rows = x
        if self.settings.memory > 0:
            state.memory.add(x, predicted, state.guard.label_shares(n_classes))
            rows = state.memory.rows()
        self._rewarm(state, module, rows)
        # Who may teach is judged again on all the rows, by the model as it is now.
        teaches = state.guard.confident(self._predictions(module, rows, n_classes)[0])
        state.method.step(module, rows, teaches, n_classes)
        if pull:
            self._toward_anchor(state, module)
        self._count(state, entropy, n_classes, report)
        reason = self._collapse(state, module, entropy, predicted, n_classes)
        if reason is not None:
            self._reset(state, module)
            report.resets.append((expert_id, reason))
            report.steps += 1

    def _count(
        self, state: _Expertise, entropy: Tensor, n_classes: int, report: AdaptReport
    ) -> None:
        """New rows the filter let in count as adapted (all of them for norm statistics)."""
        learns = self.method != "norm" and n_classes >= 2
        skipped = int((~state.guard.confident(entropy)).sum()) if learns else 0
        adapted = entropy.shape[0] - skipped
        report.adapted += adapted
        report.skipped += skipped
        report.steps += 1
        report.entropy = float(entropy.mean()) if n_classes >= 2 else None
        state.guard.adapted += adapted
        state.guard.steps += 1

    def _collapse(
        self,
        state: _Expertise,
        module: nn.Module,
        entropy: Tensor,
        predicted: Tensor,
        n_classes: int,
    ) -> str | None:
        guard = state.guard
        reason = guard.observe(entropy, predicted, n_classes)
        if reason is None and guard.guard_set_dropped(module, n_classes):
            reason = "guard_set"
        if reason is None and guard.periodic_due():
            reason = "periodic"
        return reason

    def _predictions(self, module: nn.Module, x: Tensor, n_classes: int) -> tuple[Tensor, Tensor]:
        """The served model's view of the rows, before this step adapts on them."""
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(x)
        module.train(was_training)
        if n_classes < 2:
            return out.new_zeros(x.shape[0]), out.new_zeros(x.shape[0], dtype=torch.long)
        return normalized_entropy(out, n_classes), out[:, :n_classes].argmax(dim=1)

    def _anchor(self, state: _Expertise, module: nn.Module, n_classes: int) -> None:
        state.anchor = {k: v.detach().clone() for k, v in module.state_dict().items()}
        state.stale = False
        state.method.begin(module, state.anchor)
        state.guard.anchor_accuracy = state.guard.accuracy(module, n_classes)

    def _restart(
        self,
        expert_id: str,
        state: _Expertise,
        module: nn.Module,
        report: AdaptReport,
    ) -> None:
        """A new domain: drop what described the old one before adapting to it."""
        state.rewarm = 0
        self._reset(state, module)
        report.resets.append((expert_id, "input_shift"))
        report.steps += 1

    def _refit(
        self, expert_id: str, state: _Expertise, module: nn.Module, fit: str, report: AdaptReport
    ) -> None:
        """Serve the statistics chosen at a switch: "own" restarts, "anchor" takes the
        anchor's statistics, "serving" keeps what is served."""
        if fit == "own":
            self._restart(expert_id, state, module, report)
        elif fit == "anchor":
            self._anchor_statistics(state, module)

    def _served_off_scale(self, module: nn.Module, x: Tensor) -> bool:
        """Do the served batch-norm statistics put the new rows far off the scale the
        network expects? Then they describe another domain, and the step reacts as at a
        detected shift. The detector is blind for its warm-up after each alarm, and a
        class-sorted stream alarms at every run of one class: a switch of domain inside that
        warm-up (contrast 5 to dropout 1, seed 1 of the class-sorted benchmark) went unseen
        while the served low-contrast statistics put the new rows 43 to 76 times off scale
        (mean square) and answered almost half of them wrongly. Statistics adapted to the
        rows' own domain put them on scale by construction."""
        if self.settings.on_shift == "none" or not batch_norms(module):
            return False
        return not _on_scale(module, x)

    def _best_statistics(
        self, state: _Expertise, module: nn.Module, x: Tensor, n_classes: int
    ) -> str:
        """The batch-norm statistics the expert is surest with on the new rows: the rows'
        own ("own"), its anchor's ("anchor") or the ones it serves with ("serving").

        Rows of a new domain normalized with their own statistics look like the data the
        expert learned: its answers grow surer. A class-sorted stream moves the inputs at
        every run of one class too, but one class's statistics fit nothing: normalized with
        them the rows look like no class and the answers grow less sure. The statistics
        served with and the anchor's compete only where they put the rows on the scale the
        network expects: another domain's can blow the rows up, and answers then are
        confidently wrong.
        """
        if n_classes < 2 or not batch_norms(module):
            return "own"  # no entropy to judge by (regression)
        assert state.anchor is not None
        with statistics_mode(module, momentum=0.0), torch.no_grad():
            scores = {"own": float(normalized_entropy(module(x), n_classes).mean())}
        if _on_scale(module, x):
            scores["serving"] = float(self._predictions(module, x, n_classes)[0].mean())
        anchored = self._anchor_entropy(state, module, x, n_classes)
        if anchored is not None:
            scores["anchor"] = anchored
        return min(scores, key=lambda name: scores[name])

    def _anchor_entropy(
        self, state: _Expertise, module: nn.Module, x: Tensor, n_classes: int
    ) -> float | None:
        """Mean prediction entropy on ``x`` with the anchor's batch-norm statistics; None
        where they put the rows off the scale the network expects."""
        assert state.anchor is not None
        kept = {k: v.clone() for k, v in norm_statistics(module.state_dict(), module).items()}
        module.load_state_dict(norm_statistics(state.anchor, module), strict=False)
        try:
            if not _on_scale(module, x):
                return None
            return float(self._predictions(module, x, n_classes)[0].mean())
        finally:
            module.load_state_dict(kept, strict=False)

    def _anchor_statistics(self, state: _Expertise, module: nn.Module) -> None:
        """Batch norm's statistics back to the anchor's; weights and memory stay."""
        assert state.anchor is not None
        module.load_state_dict(norm_statistics(state.anchor, module), strict=False)

    def _anchor_surer(
        self, state: _Expertise, module: nn.Module, x: Tensor, entropy: Tensor, n_classes: int
    ) -> bool:
        """Should this step end with a pull toward the anchor's statistics
        (``source_weight``)? With ``source_gate``, only where the anchor's statistics put
        the new rows on scale and answer them more surely than the served ones: a mild
        domain, or a return to the source, where the batches' statistics add only noise and
        class-sorted or mixed batches add bias."""
        if self.settings.source_weight == 0:
            return False
        if not self.settings.source_gate:
            return True
        if n_classes < 2 or not batch_norms(module):
            return False  # no entropy to judge by (regression): no pull
        anchored = self._anchor_entropy(state, module, x, n_classes)
        # Strictly surer: right after a reset the served statistics are the anchor's, a tie,
        # and a pull then would mix the anchor's into the new domain's as they re-estimate.
        # On a low-contrast domain a tenth of the anchor's variance outweighs the rows' own,
        # the answers turn unsure, the anchor's look surer from then on: a trap.
        return anchored is not None and anchored < float(entropy.mean())

    def _toward_anchor(self, state: _Expertise, module: nn.Module) -> None:
        """Served statistics a ``source_weight`` share of the way back to the anchor's."""
        weight = self.settings.source_weight
        if weight == 0 or state.anchor is None:
            return
        served = module.state_dict()
        with torch.no_grad():
            for name, anchored in norm_statistics(state.anchor, module).items():
                if anchored.is_floating_point():
                    served[name].lerp_(anchored.to(served[name].device), weight)

    def _rewarm(self, state: _Expertise, module: nn.Module, rows: Tensor) -> None:
        """After a restart the statistics are the running average of the new domain's
        steps (the anchor's counting ``shift_prior`` steps), until that is no faster than
        ``norm_momentum``: the old domain is gone within one step, not tens."""
        if state.rewarm is None:
            return
        momentum = 1.0 / (state.rewarm + 1 + self.settings.shift_prior)
        if momentum <= self.settings.norm_momentum or not batch_norms(module):
            state.rewarm = None
            return
        update_norm_statistics(module, rows, momentum)
        state.rewarm += 1

    def _reset(self, state: _Expertise, module: nn.Module) -> None:
        """Back to the anchor; the adaptation starts over from there, without the rows that
        led it astray."""
        assert state.anchor is not None
        module.load_state_dict(state.anchor)
        state.method = self._method()  # optimizer state from before the collapse goes too
        state.method.begin(module, state.anchor)
        state.memory.clear()
        state.guard.clear()

    def _state(self, expert_id: str) -> _Expertise:
        state = self.experts.get(expert_id)
        if state is None:
            seed = self.seed + 7919 * (len(self.experts) + 1)
            state = _Expertise(
                self._method(),
                Guard(self.settings.guards, seed),
                BalancedMemory(max(self.settings.memory, 1)),
            )
            self.experts[expert_id] = state
        return state

    def _method(self) -> AdaptMethod:
        s = self.settings
        if self._user is not None:
            method: AdaptMethod = self._user(settings=s, generator=self.generator)
            return method
        if self.method == "norm":
            return NormStats(s.norm_momentum)
        if self.method == "tent":
            return Tent(s.learning_rate, s.norm_momentum)
        return CoTTA(
            learning_rate=s.learning_rate,
            momentum=s.norm_momentum,
            teacher_momentum=s.teacher_momentum,
            confidence=s.confidence_threshold,
            augmentations=s.augmentations,
            restore=s.restore_probability,
            augment=self.augment,
            generator=self.generator,
        )

    def state_dict(self) -> StateDict:
        return {
            "method": self.method,
            "rng": self.generator.get_state(),
            "experts": {
                expert_id: {
                    "anchor": state.anchor,
                    "stale": state.stale,
                    "shifted": state.shifted,
                    "rewarm": state.rewarm,
                    "pending": torch.cat(state.pending).cpu() if state.pending else None,
                    "method": state.method.state_dict(),
                    "guard": state.guard.state_dict(),
                    "memory": state.memory.state_dict(),
                }
                for expert_id, state in self.experts.items()
            },
        }

    def load_state_dict(self, state: Mapping[str, Any], modules: Mapping[str, nn.Module]) -> None:
        """Restore; ``modules`` are the experts' networks, already loaded."""
        self.experts = {}
        if state["method"] != self.method:  # another method's state does not apply
            return
        self.generator.set_state(state["rng"])
        for expert_id, saved in state["experts"].items():
            module = modules.get(expert_id)
            if module is None:
                continue
            expertise = self._state(expert_id)
            expertise.anchor, expertise.stale = saved["anchor"], bool(saved["stale"])
            # Absent from checkpoints written before input-shift detection.
            expertise.shifted = bool(saved.get("shifted", False))
            expertise.rewarm = saved.get("rewarm")
            device = next(module.parameters()).device
            if saved["pending"] is not None:
                expertise.pending = [saved["pending"].to(device)]
            expertise.memory.load_state_dict(saved["memory"], device)
            if expertise.anchor is not None:
                expertise.method.begin(module, expertise.anchor)
                expertise.method.load_state_dict(saved["method"])
            expertise.guard.load_state_dict(saved["guard"])


def _on_scale(module: nn.Module, x: Tensor, bound: float = 4.0) -> bool:
    """Does the first batch-norm layer's running statistics put ``x`` on about unit scale
    (mean square of the standardized inputs within a factor ``bound`` of 1)?"""
    layer = batch_norms(module)[0]
    seen: list[Tensor] = []
    handle = layer.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(x)
    finally:
        handle.remove()
        module.train(was_training)
    assert layer.running_mean is not None and layer.running_var is not None
    inputs = seen[0].transpose(0, 1).reshape(layer.num_features, -1).transpose(0, 1)
    z = (inputs - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps)
    mean_square = float((z * z).mean())
    return 1.0 / bound < mean_square < bound


def _user_method(spec: str, settings: AdaptSettings, seed: int) -> Callable[..., Any]:
    """The user's method factory, once one method it built has every member."""
    make = load_object(spec, "adapt.method")
    # A generator of its own: the check must not move the adapter's random stream.
    generator = torch.Generator().manual_seed(seed)
    build_checked(make, AdaptMethod, "adapt.method", settings=settings, generator=generator)
    return make


def _tensor_bytes(value: Any) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, Mapping):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(_tensor_bytes(v) for v in value)
    return 0
