"""Input sources: Kafka for production, memory for tests and learner-only benchmarks."""

from streamlearn.sources.base import AssignmentListener
from streamlearn.sources.memory import MemorySource

__all__ = ["AssignmentListener", "MemorySource"]
