"""Closed-form heads on a network's penultimate features: RLS, Kalman, class prototypes."""

from streamlearn.core.models.heads.kalman import KalmanHead
from streamlearn.core.models.heads.network import (
    HeadedNetwork,
    Link,
    headed,
    spanned,
    variances,
    with_bias,
)
from streamlearn.core.models.heads.prototype import PrototypeHead
from streamlearn.core.models.heads.rls import RlsHead

__all__ = [
    "HeadedNetwork",
    "KalmanHead",
    "Link",
    "PrototypeHead",
    "RlsHead",
    "headed",
    "spanned",
    "variances",
    "with_bias",
]
