"""Durable, atomic, checksummed checkpoints of the whole learning state."""

from streamlearn.checkpoint.format import decode, encode
from streamlearn.checkpoint.store import FileCheckpointStore
from streamlearn.core.types import LoadedCheckpoint

__all__ = ["FileCheckpointStore", "LoadedCheckpoint", "decode", "encode"]
