"""Conformance checks every implementation of a streamlearn protocol must pass.

Each raises AssertionError naming the first promise broken; each module's docstring lists
its promises. Run them over your own code (``model.factory``, ``drift.detector``,
``adapt.method``, a source, sink or store you wire in) in your test suite::

    from streamlearn.testing import check_detector, check_expert
    check_expert(lambda: build_my_expert(seed=0), x, y)
    check_adapt_method(lambda: MyMethod(), trained_module, x_unlabeled, n_classes)
    check_detector(lambda: MyDetector(settings=DriftSettings()))
    check_source(make_source, {TopicPartition("in", 0): [b"1", b"2", b"3", b"4"]})
    check_sink(my_sink, read_back)
    check_checkpoint_store(MyStore, tmp_path)

streamlearn's own tests run every check over every built-in implementation.
"""

from streamlearn.testing.adapt import check_adapt_method
from streamlearn.testing.checkpoints import check_checkpoint_store
from streamlearn.testing.detectors import check_detector, drifting_stream
from streamlearn.testing.experts import check_expert, roundtrip
from streamlearn.testing.sinks import Landed, check_sink
from streamlearn.testing.sources import check_source

__all__ = [
    "Landed",
    "check_adapt_method",
    "check_checkpoint_store",
    "check_detector",
    "check_expert",
    "check_sink",
    "check_source",
    "drifting_stream",
    "roundtrip",
]
