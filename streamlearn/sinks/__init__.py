"""Outputs: predictions, events and dead letters, to Kafka topics or to memory."""

from streamlearn.sinks.memory import MemorySink
from streamlearn.sinks.messages import dead_letter_headers, event_message, prediction_message

__all__ = ["MemorySink", "dead_letter_headers", "event_message", "prediction_message"]
