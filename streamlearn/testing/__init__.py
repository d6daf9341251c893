"""Conformance checks every implementation of a streamlearn protocol must pass.

Run them over your own experts (``model.factory``) in your test suite::

    from streamlearn.testing import check_expert
    check_expert(lambda: build_my_expert(seed=0), x, y)
    check_adapt_method(lambda: MyMethod(), trained_module, x_unlabeled, n_classes)
"""

from streamlearn.testing.adapt import check_adapt_method
from streamlearn.testing.experts import check_expert, roundtrip

__all__ = ["check_adapt_method", "check_expert", "roundtrip"]
