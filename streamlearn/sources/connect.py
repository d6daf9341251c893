"""Creating kafka-python clients without leaking them when the broker is unreachable.

kafka-python starts a client's IO thread (and opens its sockets and wake-up pipe) before it
bootstraps, and a constructor that fails to bootstrap raises without closing that client:
each failed try leaked a thread and four file descriptors, and the daemon retries its
connection for as long as the broker is down. ``closing_on_failure`` hands the constructor
a client factory that remembers what it made, and closes it if the constructor raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kafka.net.compat import KafkaNetClient

# The client's constructor blocks until it reaches a broker (30 s by default). The daemon
# retries the connection itself, checking for a stop request between tries, so each try
# is kept short: SIGTERM during an outage at start-up must still exit within seconds.
BOOTSTRAP_TIMEOUT_MS = 2_000


@contextmanager
def closing_on_failure() -> Iterator[Callable[..., Any]]:
    """Yields a ``kafka_client`` factory; clients it made are closed if the block raises."""
    made: list[Any] = []

    def make(**config: Any) -> Any:
        client = KafkaNetClient(**config)
        made.append(client)
        return client

    try:
        yield make
    except BaseException:
        for client in made:
            client.close()
        raise
