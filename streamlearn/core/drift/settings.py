"""The ``drift`` settings section: the detector, what it is fed, its false-alarm rate."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from streamlearn.core.drift.calibration import arl_from_rate, cusum_threshold
from streamlearn.core.extensions import builtin_or_spec
from streamlearn.core.section import Section


class CusumSettings(Section):
    """The CUSUM detector's parameters."""

    # Half the smallest shift, in standard deviations, to be caught fast: 0.25 aims at half a
    # sigma, the rise a concept change that flips 10-20% of labels gives (0.5 missed those).
    k: float = Field(0.25, gt=0)
    # "up": only a rising loss is a drift (a falling one re-estimates the baseline quietly).
    direction: Literal["up", "both"] = "up"


class PageHinkleySettings(Section):
    """The Page-Hinkley detector's parameters."""

    delta: float = Field(0.5, gt=0)  # tolerated rise, in standard deviations


class LossDeviationSettings(Section):
    """The loss-deviation detector's parameters."""

    window: int = Field(50, ge=5)  # recent values whose mean is tested
    memory: int = Field(5_000, ge=10)  # about how many older values the reference remembers


class AdwinSettings(Section):
    """river's ADWIN detector's parameters."""

    delta: float = Field(0.002, gt=0, lt=1)  # river's confidence parameter


class KswinSettings(Section):
    """river's KSWIN detector's parameters."""

    # river defaults to 0.005, which alarms about 80 times per 100k stable values here.
    alpha: float = Field(1e-4, gt=0, lt=1)
    window_size: int = Field(100, ge=2)
    stat_size: int = Field(30, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _stat_inside_window(self) -> KswinSettings:
        if self.stat_size >= self.window_size:
            raise ValueError(
                f"stat_size ({self.stat_size}) must be below window_size ({self.window_size})"
            )
        return self


class InputShiftSettings(Section):
    """The covariate-shift detector on the input rows (drift/input_shift.py)."""

    # Watch the inputs for a change of domain; independent of `enabled` (the loss detectors),
    # so it runs where labels never come.
    enabled: bool = True
    # Which rows it watches: "all" (labeled and unlabeled: the labeled rows give it a
    # reference before unlabeled traffic starts) or "unlabeled" only.
    rows: Literal["all", "unlabeled"] = "all"
    # The threshold is solved for this many false alarms per 100k stable rows.
    false_alarms_per_100k: float = Field(0.1, gt=0, le=10_000)
    # Rows that estimate every feature's mean and spread, at start and after every alarm.
    warmup: int = Field(256, ge=16)
    # Rows ignored after an alarm before the warm-up (0: the new domain is there at once).
    refractory: int = Field(0, ge=0)
    # Half the smallest per-feature mean change, in standard deviations, to catch fast.
    k: float = Field(0.5, gt=0)
    # Standardized values are clipped to +-clip: one odd row cannot alarm alone.
    clip: float = Field(2.5, gt=0)

    @model_validator(mode="after")
    def _threshold_exists(self) -> InputShiftSettings:
        cusum_threshold(self.k, arl_from_rate(self.false_alarms_per_100k) * 4, self.warmup)
        return self


# Built-in drift detectors (streamlearn.core.drift.registry builds them) and adaptation methods.


DETECTOR_NAMES = ("cusum", "page_hinkley", "loss_deviation", "adwin", "kswin")
# drift.clip when it is unset, per detector; any other takes DEFAULT_CLIP.
CLIP_BY_DETECTOR = {"cusum": 6.0}
DEFAULT_CLIP = 2.5


class DriftSettings(Section):
    """Which drift detector runs, what it is fed, and its false-alarm rate."""

    enabled: bool = True
    # A built-in detector, or "package.module:name" called as name(settings=<this section>)
    # for each expert, returning a streamlearn.core.protocols.DriftDetector (docs/extending.md).
    detector: str = "cusum"
    # What each labeled sample feeds the detector: its loss, or 1/0 for wrong/right
    # (classification only).
    signal: Literal["loss", "error"] = "loss"
    # Thresholds are solved for this many false alarms per 100k stable samples (cusum,
    # page_hinkley, loss_deviation; river's detectors use their own parameters).
    false_alarms_per_100k: float = Field(0.1, gt=0, le=10_000)
    # Values that estimate the baseline mean and spread, after start and after every drift.
    warmup: int = Field(500, ge=2)
    # Values ignored after a drift: the loss right after a change is an expert's transient.
    refractory: int = Field(500, ge=0)
    # Values are clipped to baseline mean +- clip standard deviations before the test, so a
    # single outlier cannot alarm and skewed losses (most are) behave like normal ones. Unset,
    # each detector takes its own (CLIP_BY_DETECTOR): CUSUM at 2.5 clipped a concept change's
    # wrong answers down to look like noise, at 6 it keeps them and still holds its false-alarm
    # rate on skewed and 0/1 losses (benchmarks/drift/sensitivity.py); Page-Hinkley and the
    # loss-deviation test alarm on stable skewed losses at 6, so they stay at 2.5.
    clip: float | None = Field(None, gt=0)
    # WARNING once the statistic passes this fraction of the drift threshold.
    warning_fraction: float = Field(0.5, gt=0, lt=1)
    # Recent drift events kept for GET /v1/drift-events; all of them go to the events topic.
    history: int = Field(1_000, ge=1)
    # Values kept to rebuild river's detectors from a checkpoint.
    replay_limit: int = Field(20_000, ge=100)
    cusum: CusumSettings = Field(default_factory=CusumSettings)
    page_hinkley: PageHinkleySettings = Field(default_factory=PageHinkleySettings)
    loss_deviation: LossDeviationSettings = Field(default_factory=LossDeviationSettings)
    adwin: AdwinSettings = Field(default_factory=AdwinSettings)
    kswin: KswinSettings = Field(default_factory=KswinSettings)
    input_shift: InputShiftSettings = Field(default_factory=InputShiftSettings)

    def clip_for(self, detector: str) -> float:
        """The clip a detector uses: drift.clip when set, else the detector's own."""
        return self.clip if self.clip is not None else CLIP_BY_DETECTOR.get(detector, DEFAULT_CLIP)

    @model_validator(mode="after")
    def _threshold_exists(self) -> DriftSettings:
        k = {"cusum": self.cusum.k, "page_hinkley": self.page_hinkley.delta}.get(self.detector)
        if k is not None:
            cusum_threshold(k, arl_from_rate(self.false_alarms_per_100k), self.warmup)
        return self

    @field_validator("detector")
    @classmethod
    def _known_detector(cls, value: str) -> str:
        return builtin_or_spec(value, DETECTOR_NAMES)
