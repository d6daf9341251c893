"""The detectors by name: :func:`detector_factory` makes the one the settings name.

``drift.detector`` is a built-in name (:data:`DETECTORS`) or ``"package.module:name"``: a
class or function called as ``name(settings=<the drift section>)`` for every expert, that
returns a :class:`~streamlearn.core.protocols.DriftDetector`. Its own parameters are its own
business (defaults, or a small function that passes them); from the section it may read
what every detector shares (``warmup``, ``refractory``, ``warning_fraction``, ``clip``,
``false_alarms_per_100k``). It is loaded and one detector is built and checked when the
monitor is made, so a wrong name or a missing member stops the daemon at start.
"""

from __future__ import annotations

from collections.abc import Callable

from streamlearn.core.drift.base import BaseDetector
from streamlearn.core.drift.calibration import arl_from_rate
from streamlearn.core.drift.cusum import Cusum
from streamlearn.core.drift.loss_deviation import LossDeviation
from streamlearn.core.drift.page_hinkley import PageHinkley
from streamlearn.core.drift.river_adapter import Adwin, Kswin
from streamlearn.core.drift.settings import DriftSettings
from streamlearn.core.extensions import build_checked, load_object
from streamlearn.core.protocols import DriftDetector


def _cusum(s: DriftSettings) -> Cusum:
    return Cusum(
        k=s.cusum.k,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip_for("cusum"),
        direction=s.cusum.direction,
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _page_hinkley(s: DriftSettings) -> PageHinkley:
    return PageHinkley(
        delta=s.page_hinkley.delta,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip_for("page_hinkley"),
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _loss_deviation(s: DriftSettings) -> LossDeviation:
    return LossDeviation(
        window=s.loss_deviation.window,
        memory=s.loss_deviation.memory,
        arl0=arl_from_rate(s.false_alarms_per_100k),
        clip=s.clip_for("loss_deviation"),
        warmup=s.warmup,
        refractory=s.refractory,
        warning_fraction=s.warning_fraction,
    )


def _adwin(s: DriftSettings) -> Adwin:
    return Adwin(s.adwin.model_dump(), refractory=s.refractory, replay_limit=s.replay_limit)


def _kswin(s: DriftSettings) -> Kswin:
    return Kswin(s.kswin.model_dump(), refractory=s.refractory, replay_limit=s.replay_limit)


# The built-in ones; their names are also in settings.DETECTOR_NAMES, which validates
# drift.detector without importing this module (it loads torch and river).
DETECTORS: dict[str, Callable[[DriftSettings], BaseDetector]] = {
    "cusum": _cusum,
    "page_hinkley": _page_hinkley,
    "loss_deviation": _loss_deviation,
    "adwin": _adwin,
    "kswin": _kswin,
}


def detector_factory(settings: DriftSettings) -> Callable[[], DriftDetector]:
    """What makes a detector for each expert; a user's is loaded and checked now.

    Raises :class:`~streamlearn.core.errors.SettingsError` naming ``drift.detector`` when the
    module does not import, has no such name, or what it builds lacks a member.
    """
    builtin = DETECTORS.get(settings.detector)
    if builtin is not None:
        return lambda: builtin(settings)
    user = load_object(settings.detector, "drift.detector")
    build_checked(user, DriftDetector, "drift.detector", settings=settings)

    def build() -> DriftDetector:
        detector: DriftDetector = user(settings=settings)
        return detector

    return build


def build_detector(settings: DriftSettings) -> BaseDetector:
    """The built-in detector the settings name, as its class (tests and benchmarks look at
    its phases); a user's is made by :func:`detector_factory`."""
    return DETECTORS[settings.detector](settings)
