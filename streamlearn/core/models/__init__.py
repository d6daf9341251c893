"""Network builders, and loading of user factories given as ``"module:function"``."""

from streamlearn.core.models.cnn import ImageCnn
from streamlearn.core.models.factory import load_factory
from streamlearn.core.models.mlp import build_mlp
from streamlearn.core.models.norm import batch_norms, norm_affine_parameters, training

__all__ = [
    "ImageCnn",
    "batch_norms",
    "build_mlp",
    "load_factory",
    "norm_affine_parameters",
    "training",
]
