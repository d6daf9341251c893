"""Network builders, and loading of user factories given as ``"module:function"``."""

from streamlearn.models.factory import load_factory
from streamlearn.models.mlp import build_mlp

__all__ = ["build_mlp", "load_factory"]
