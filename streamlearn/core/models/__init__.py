"""Network builders, and loading of user factories given as ``"module:function"``."""

from streamlearn.core.models.cnn import ImageCnn
from streamlearn.core.models.factory import load_factory
from streamlearn.core.models.mlp import build_mlp, seed_weights
from streamlearn.core.models.norm import (
    batch_norms,
    evaluating,
    norm_affine_parameters,
    predict_with,
    training,
)

__all__ = [
    "ImageCnn",
    "batch_norms",
    "build_mlp",
    "evaluating",
    "load_factory",
    "norm_affine_parameters",
    "predict_with",
    "seed_weights",
    "training",
]
