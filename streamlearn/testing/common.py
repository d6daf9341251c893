"""What the conformance checks share: a checkpoint's round trip, deep equality, promises."""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor


def roundtrip(state: dict[str, Any]) -> Any:
    """``state`` through ``torch.save`` and ``torch.load(weights_only=True)``: what a
    checkpoint does to it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def same(a: Any, b: Any) -> bool:
    """Deep equality of plain state: tensors by value, mappings by key, sequences in order."""
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (
            isinstance(b, list | tuple)
            and len(a) == len(b)
            and all(same(p, q) for p, q in zip(a, b, strict=True))
        )
    return bool(a == b)


@contextmanager
def promise(name: str) -> Iterator[None]:
    """Checks one promise: an exception inside is that promise broken, so it becomes the
    AssertionError every check raises (the original is chained)."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"{name}: {exc}") from exc
    except Exception as exc:
        raise AssertionError(f"{name}: raised {type(exc).__name__}: {exc}") from exc
