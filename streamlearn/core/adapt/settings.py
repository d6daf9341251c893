"""The ``adapt`` settings section: test-time adaptation's method, parameters and guards."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from streamlearn.core.extensions import builtin_or_spec
from streamlearn.core.section import Section


class GuardSettings(Section):
    """The guards of test-time adaptation: which rows may teach and when to reset."""

    # Samples whose prediction entropy, as a share of its maximum, lies above this are not
    # adapted on: uncertain pseudo-labels are where self-training goes wrong.
    max_entropy: float = Field(0.4, gt=0, le=1)
    # Collapse checks over the last `window` adapted predictions: their mean normalized
    # entropy below min_entropy, or the normalized entropy of the predicted classes'
    # histogram below min_marginal times that of the labels learned, puts the expert back
    # to its last labeled state.
    window: int = Field(512, ge=16)
    min_entropy: float = Field(0.01, ge=0, le=1)
    min_marginal: float = Field(0.3, ge=0, le=1)
    # Labeled samples kept per expert to check adapted accuracy on (0 = no guard set); a
    # drop of more than guard_drop below the accuracy at the anchor is a collapse too.
    guard_set: int = Field(256, ge=0)
    guard_drop: float = Field(0.15, gt=0, le=1)
    guard_every: int = Field(8, ge=1)  # adaptation steps between guard-set checks
    # Back to the last labeled state after this many adapted samples since the last reset
    # (0 = never).
    reset_every: int = Field(0, ge=0)


ADAPT_METHODS = ("auto", "none", "norm", "tent", "cotta")


class AdaptSettings(Section):
    """Test-time adaptation on unlabeled samples: the method and its parameters."""

    # Test-time adaptation on unlabeled samples. "norm": re-estimate the normalization
    # layers' statistics; "tent": also minimize prediction entropy over their affine
    # parameters; "cotta": a mean teacher's pseudo-labels train a student copy, with a small
    # random share of weights restored to the last labeled state each step. "auto" is tent
    # for a classifier (with the gated pull below it measured the fewest domains worse than
    # the source model, issue 19) and norm for a regressor (entropy needs classes) when the
    # network has batch norm (model.norm: batch), else none: on a network without it
    # adaptation measured no gain and costs most of the unlabeled throughput. "package.module:name":
    # your own, called as name(settings=<this section>, generator=<torch.Generator>) per
    # expert, returning a streamlearn.core.protocols.AdaptMethod (docs/extending.md).
    method: str = "auto"
    # Adapt on served infer requests too (their rows reach the learner, bounded and lossy).
    on_requests: bool = False
    # Unlabeled samples gathered per expert before one adaptation step: normalization
    # statistics from a handful of rows are noise.
    batch_size: int = Field(32, ge=2)
    # Each step adapts on a class-balanced memory of this many recent rows per expert, not
    # on the new batch alone: a class-sorted stream then cannot drag the statistics to one
    # class. 0 adapts on each new batch alone (batch norm needs two rows: 1 is refused).
    memory: int = Field(64, ge=0)
    learning_rate: float = Field(1e-3, gt=0)
    # Momentum of the running normalization statistics per adaptation step.
    norm_momentum: float = Field(0.1, gt=0, le=1)
    # Mean teacher: its weights move this much towards the student each step.
    teacher_momentum: float = Field(0.999, ge=0, lt=1)
    # Below this teacher confidence, the pseudo-label averages predictions on augmentations.
    confidence_threshold: float = Field(0.9, ge=0, le=1)
    augmentations: int = Field(8, ge=1)
    # Share of weights put back to their last labeled values each step (CoTTA's restore).
    restore_probability: float = Field(0.01, ge=0, le=1)
    # Image inputs (model.image_shape) are augmented with shifts of up to one pixel, plus
    # horizontal flips when they are valid for the data (not for digits or text).
    flips: bool = False
    noise_sd: float = Field(0.05, ge=0)  # augmentation noise, in units of the model input
    feature_dropout: float = Field(0.1, ge=0, lt=1)
    # What a detected input shift (drift.input_shift) does to each adapted expert: "restart"
    # weighs three batch-norm statistics on the first new rows (the rows' own, the anchor's,
    # the ones served with) and keeps the one the expert is surest with; the rows' own win
    # on a new domain: the expert goes back to its anchor (weights, memory, the method's
    # state) and re-estimates the statistics fast (shift_prior). "none" carries on, the old
    # domain's statistics fading at norm_momentum per step. With "restart" the first batch
    # after an alarm is adapted on before it is answered, and a step whose rows the served
    # statistics put far off scale (a switch the detector missed) takes the anchor's
    # statistics where they fit the rows, else restarts.
    on_shift: Literal["restart", "none"] = "restart"
    shift_prior: float = Field(0.0, ge=0)
    # After each step the served batch-norm statistics move this share of the way back to
    # the anchor's (robust BN: a mix of source and target statistics). On a mild domain the
    # anchor's statistics are close to right and the batches' add only noise (and bias, on
    # class-sorted or mixed streams). 0 = off.
    source_weight: float = Field(0.1, ge=0, lt=1)
    # Pull only at steps where the anchor's statistics put the new rows on scale and answer
    # them more surely (mean prediction entropy) than the served ones; a severe domain
    # keeps its own. Without classes (regression) there is nothing to judge by: no pull.
    source_gate: bool = True
    guards: GuardSettings = Field(default_factory=GuardSettings)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return builtin_or_spec(value, ADAPT_METHODS)

    @field_validator("memory")
    @classmethod
    def _memory_holds_a_batch(cls, value: int) -> int:
        if value == 1:
            raise ValueError("0 (off) or at least 2: batch statistics need two rows")
        return value

    def method_for(self, task: str, batch_norm: bool) -> str:
        """The method in force, "auto" resolved for the task and whether the network has
        batch norm (without it, adaptation measured no gain for its cost)."""
        if self.method != "auto":
            return self.method
        if not batch_norm:
            return "none"
        return "tent" if task == "classification" else "norm"
