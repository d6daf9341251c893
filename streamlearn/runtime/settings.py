"""The ``metrics`` settings section: where the Prometheus endpoint listens."""

from __future__ import annotations

from pydantic import Field

from streamlearn.core.section import Section


class MetricsSettings(Section):
    """The Prometheus ``/metrics`` endpoint."""

    enabled: bool = True
    host: str = "0.0.0.0"
    port: int = Field(9100, ge=0, le=65535)


# A bearer token shorter than this is refused: 16 random characters are past guessing.
