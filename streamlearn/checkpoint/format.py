"""The checkpoint file format.

    MAGIC (8 bytes) | SHA-256 of the payload (32 bytes) | payload

The payload is ``torch.save`` of a dict of plain data and tensors. Loading verifies the
checksum before anything is deserialized, and deserializes with ``weights_only=True``, so a
checkpoint can never execute code: a torn write, a flipped byte or a crafted file is refused.
"""

from __future__ import annotations

import hashlib
import io
from typing import Any

import torch

from streamlearn.core.errors import CheckpointError

MAGIC = b"SLCKPT01"
_DIGEST_SIZE = 32
FORMAT_VERSION = 1


def encode(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    return MAGIC + hashlib.sha256(payload).digest() + payload


def decode(data: bytes) -> dict[str, Any]:
    header = len(MAGIC) + _DIGEST_SIZE
    if len(data) < header or not data.startswith(MAGIC):
        raise CheckpointError("not a streamlearn checkpoint (bad magic or truncated header)")
    digest, payload = data[len(MAGIC) : header], data[header:]
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("checksum mismatch: the file is torn or corrupt")
    try:
        state = torch.load(io.BytesIO(payload), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises many types for a bad payload; all mean "refuse"
        raise CheckpointError(f"payload does not load with weights_only=True: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
        raise CheckpointError(
            f"unknown checkpoint format {state.get('format')!r}"
            if isinstance(state, dict)
            else "payload is not a mapping"
        )
    return state
