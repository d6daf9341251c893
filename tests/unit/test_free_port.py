"""free_port picks below the kernel's ephemeral range, so no connection can take its port."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from streamlearn.app import embedded
from streamlearn.app.embedded import free_port

_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


@pytest.mark.skipif(not _RANGE.exists(), reason="the kernel's ephemeral range is Linux's")
def test_ports_lie_below_the_ephemeral_range_and_are_never_handed_out_twice() -> None:
    ephemeral_low = int(_RANGE.read_text().split()[0])
    ports = [free_port() for _ in range(200)]
    assert all(port < ephemeral_low for port in ports)
    assert len(set(ports)) == len(ports)


def test_the_one_port_nobody_listens_on_is_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    base = 23_000
    listeners = []
    for port in range(base, base + 40):
        # where someone else listens, the port is as taken for free_port as one of ours
        with contextlib.suppress(OSError):
            listeners.append(socket.create_server(("127.0.0.1", port)))
    free = listeners.pop(17)
    free_one = free.getsockname()[1]
    free.close()
    monkeypatch.setattr(embedded, "_below_ephemeral", lambda: range(base, base + 40))
    monkeypatch.setattr(embedded, "_handed_out", set())  # earlier tests' picks may lie here
    try:
        assert free_port() == free_one
    finally:
        for sock in listeners:
            sock.close()
