"""Conformance checks every implementation of a streamlearn protocol must pass.

Run them over your own experts (``model.factory``) in your test suite::

    from streamlearn.testing import check_expert
    check_expert(lambda: build_my_expert(seed=0), x, y)
"""

from streamlearn.testing.experts import check_expert, roundtrip

__all__ = ["check_expert", "roundtrip"]
