"""Network builders, and loading of user factories given as ``"module:function"``."""

from streamlearn.models.cnn import ImageCnn
from streamlearn.models.factory import load_factory
from streamlearn.models.mlp import build_mlp
from streamlearn.models.norm import batch_norms, norm_affine_parameters, training

__all__ = [
    "ImageCnn",
    "batch_norms",
    "build_mlp",
    "load_factory",
    "norm_affine_parameters",
    "training",
]
