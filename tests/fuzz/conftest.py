"""One running service for the HTTP fuzzing modules: started once for the package (a serving
process imports torch: seconds), with a write token so /v1/learn and /v1/checkpoint are on.

Built with the serving tests' own helpers (tests/serving/conftest.py): the learner runs in
this process on an in-memory source, the HTTP server in its own serving process, and every
fuzz case is a real HTTP request over TCP.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving.conftest import Running, _services, settled

# Long and random enough for the settings' token rules.
FUZZ_TOKEN = "fuzz-7c1e9a0b5d2f4e6a8b3c"
AUTH = {"Authorization": f"Bearer {FUZZ_TOKEN}"}
LEARNED = 500


@pytest.fixture(scope="package")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    with _services(tmp_path_factory.mktemp("fuzzed")) as make:
        running = make(records=LEARNED, serve={"auth_token": FUZZ_TOKEN})
        settled(running, LEARNED)
        yield running
