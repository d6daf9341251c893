"""How ``make test`` spreads the suite over two workers (pytest-xdist, ``--dist loadgroup``).

The broker-backed suites start, kill and restart daemon process trees against an embedded
broker and wait on consumer groups: they run one after another on one worker, so two of them
never compete for this machine's two cores and a group never waits on another test's
rebalance. Everything else is spread over both workers. ``make test`` runs the reliability
suite on its own afterwards (its promises are timed); this grouping keeps it together too
when someone runs everything with ``-n``. Without xdist the mark is inert.

Each worker's torch gets one intra-op thread: two workers on two cores, each with torch's
default of a thread per core, oversubscribe the machine (a unit test measured 4 s alone took
50 s in CI), and the daemon's own learner runs with one thread by default too.
"""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

SERIAL_SUITES = ("integration", "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SERIAL_SUITES:
            item.add_marker(pytest.mark.xdist_group("broker"))
