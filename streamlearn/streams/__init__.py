"""Built-in drifting streams, all offline (river generators; nothing is downloaded)."""

from streamlearn.streams.synthetic import STREAMS, drifting_stream

__all__ = ["STREAMS", "drifting_stream"]
