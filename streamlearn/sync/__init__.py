"""Scale-out: replicas learn one model with torch.distributed (docs/scaling.md)."""

from streamlearn.sync.settings import SyncSettings

__all__ = ["SyncSettings"]
