"""How ``make test`` spreads the suite over two workers (pytest-xdist, ``--dist loadgroup``).

The broker-backed suites start, kill and restart daemon process trees against an embedded
broker and wait on consumer groups: they run one after another on one worker, so two of them
never compete for this machine's two cores and a group never waits on another test's
rebalance. Everything else is spread over both workers. ``make test`` runs the reliability
suite on its own afterwards (its promises are timed); this grouping keeps it together too
when someone runs everything with ``-n``. Without xdist the mark is inert.
"""

from __future__ import annotations

import pytest

SERIAL_SUITES = ("integration", "reliability")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.parent.name in SERIAL_SUITES:
            item.add_marker(pytest.mark.xdist_group("broker"))
