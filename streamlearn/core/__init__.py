"""The learner, with no I/O: samples in, predictions, losses and events out.

The engine (``engine.py``) runs one learning step over a batch: admission, scaling,
test-then-train scoring, the expert pool (``experts/``), drift detection (``drift/``) and
test-time adaptation (``adapt/``) on networks from ``models/``. The contracts every part
meets are in ``protocols.py``; ``types.py`` and ``errors.py`` are what all of streamlearn
shares. Nothing here imports from the shell around it (sources, sinks, serving, the daemon,
the commands): ``tests/unit/test_import_graph.py`` holds it to that.
"""
