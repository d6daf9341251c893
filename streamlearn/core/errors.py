"""One base error for the whole package and one subclass per area.

Callers catch :class:`StreamlearnError` at the process boundary (the CLI) and turn it into a
clear message and an exit code; nothing below the CLI prints or exits.
"""

from __future__ import annotations


class StreamlearnError(Exception):
    """Base of every error streamlearn raises on purpose."""


class SettingsError(StreamlearnError):
    """Settings failed validation; ``problems`` holds one line per field at fault."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid settings:\n  " + "\n  ".join(problems))


class CodecError(StreamlearnError):
    """A record could not be decoded into samples; ``reason`` is a short metric label."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class CheckpointError(StreamlearnError):
    """A checkpoint file is missing, torn, corrupt or of an unknown format."""


class ModelError(StreamlearnError):
    """A model could not be built or does not fit the data it is given."""


class SourceError(StreamlearnError):
    """The input source failed in a way the daemon cannot ride out."""


class BrokerError(StreamlearnError):
    """The embedded broker could not be found or started."""


class RequestError(StreamlearnError):
    """A serving request that cannot be answered.

    ``status`` is the HTTP status (gRPC maps it to a status code) and ``reason`` a short
    metric label; the message names the field or input at fault.
    """

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(message)
