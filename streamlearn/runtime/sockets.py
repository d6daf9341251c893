"""The service's listening sockets, made by the supervisor before any child exists."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager

# Connections the kernel queues while every serving process is busy (or restarting).
_BACKLOG = 2048


def listen_socket(host: str, port: int, setting: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port), inheritable by children.

    ``setting`` names the port's setting in the error a failed bind raises."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _bind(sock, host, port, setting)
    sock.listen(_BACKLOG)
    sock.set_inheritable(True)
    return sock


def reserve_port(host: str, port: int, setting: str) -> socket.socket:
    """Bind (without listening) with SO_REUSEPORT: the port is ours, its number known, and
    every serving process's gRPC server can bind it too (gRPC binds by address only)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    _bind(sock, host, port, setting)
    return sock


def _bind(sock: socket.socket, host: str, port: int, setting: str) -> None:
    try:
        with binding(setting, host, port):
            sock.bind((host, port))
    except OSError:
        sock.close()
        raise


@contextmanager
def binding(setting: str, host: str, port: int) -> Iterator[None]:
    """An OSError inside names the setting and the address: "serve.http_port
    127.0.0.1:8080: Address already in use", which a user can act on."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, f"{setting} {host}:{port}: {exc.strerror}") from None
