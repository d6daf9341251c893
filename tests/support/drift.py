"""Drift settings for the tests of a detector's mechanics.

The exact positions those tests expect were found with CUSUM's ``k`` 0.5 and ``clip`` 2.5
on 200 values of warm-up. The shipped defaults moved (k 0.25, CUSUM's clip 6: measured by
benchmarks/drift/sensitivity.py), and at k 0.25 a 200-value warm-up is refused for the
default false-alarm rate; the mechanics do not depend on either, so these tests pin them.
"""

from __future__ import annotations

from typing import Any

from streamlearn.core.drift.settings import DriftSettings


def mechanics(**overrides: Any) -> DriftSettings:
    """DriftSettings with k 0.5 and clip 2.5 unless ``overrides`` say otherwise."""
    cusum = {"k": 0.5, **overrides.pop("cusum", {})}
    return DriftSettings(**{"clip": 2.5, **overrides, "cusum": cusum})
