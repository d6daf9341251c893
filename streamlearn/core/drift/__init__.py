"""Drift detectors over each expert's per-sample losses, one algorithm per module.

Every detector implements :class:`streamlearn.core.protocols.DriftDetector` plus ``update_many``
(a batch at once) and ``statistic`` (0 calm, 1 at the threshold).
:func:`streamlearn.core.drift.registry.build_detector` makes the one the settings name.

This package's ``__init__`` imports nothing: the settings check a threshold with
:mod:`.calibration` (pure arithmetic), and the supervisor of ``streamlearn run``, which
validates settings, must not load torch and river for that.
"""
