"""The detectors by name: :func:`build_detector` makes the one the settings name."""

from __future__ import annotations

from collections.abc import Callable

from streamlearn.drift.base import BaseDetector
from streamlearn.drift.calibration import arl_from_rate
from streamlearn.drift.cusum import Cusum
from streamlearn.drift.loss_deviation import LossDeviation
from streamlearn.drift.page_hinkley import PageHinkley
from streamlearn.drift.river_adapter import Adwin, Kswin
from streamlearn.settings import DriftSettings


def _cusum(s: DriftSettings) -> BaseDetector:
    return Cusum(
        k=s.cusum.k,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip,
        direction=s.cusum.direction,
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _page_hinkley(s: DriftSettings) -> BaseDetector:
    return PageHinkley(
        delta=s.page_hinkley.delta,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip,
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _loss_deviation(s: DriftSettings) -> BaseDetector:
    return LossDeviation(
        window=s.loss_deviation.window,
        memory=s.loss_deviation.memory,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip,
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _adwin(s: DriftSettings) -> BaseDetector:
    return Adwin(s.adwin.model_dump(), refractory=s.refractory, replay_limit=s.replay_limit)


def _kswin(s: DriftSettings) -> BaseDetector:
    return Kswin(s.kswin.model_dump(), refractory=s.refractory, replay_limit=s.replay_limit)


DETECTORS: dict[str, Callable[[DriftSettings], BaseDetector]] = {
    "cusum": _cusum,
    "page_hinkley": _page_hinkley,
    "loss_deviation": _loss_deviation,
    "adwin": _adwin,
    "kswin": _kswin,
}


def build_detector(settings: DriftSettings) -> BaseDetector:
    return DETECTORS[settings.detector](settings)
