"""streamlearn: a daemon that learns online from non-stationary Kafka streams."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
