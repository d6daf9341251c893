"""The ``serve`` settings section, and what makes a bearer token acceptable."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from streamlearn.core.section import Section

MIN_TOKEN_CHARS = 16
# Words of the placeholders that example files ship (this project's used "change-me"). A
# token made only of these, digits and separators ("change-me", "CHANGE_ME_CHANGE_ME",
# "your-secret-token-here", "password12345678") is refused: long enough, still guessable.


PLACEHOLDER_WORDS = (
    "change",
    "me",
    "secret",
    "token",
    "password",
    "streamlearn",
    "example",
    "test",
    "your",
    "here",
    "my",
    "default",
    "dummy",
    "placeholder",
)


_PLACEHOLDER = re.compile(
    rf"(?:[\W_\d]*+(?:{'|'.join(PLACEHOLDER_WORDS)}))+[\W_\d]*+", re.IGNORECASE
)
# "xxxxxxxxxxxxxxxx", "0000000000000000", "abababab...": fewer distinct characters than this.


_MIN_DISTINCT_CHARS = 4


TOKEN_HINT = "use 16 or more random characters, e.g. from `openssl rand -hex 24`"


def token_problem(token: str) -> str | None:
    """Why ``token`` cannot guard the write endpoints, or None. Never quotes the token:
    the answer goes into errors and logs."""
    if len(token) < MIN_TOKEN_CHARS:
        return f"shorter than {MIN_TOKEN_CHARS} characters"
    if _PLACEHOLDER.fullmatch(token):
        return "a known placeholder"
    if len(set(token)) < _MIN_DISTINCT_CHARS:
        return f"made of fewer than {_MIN_DISTINCT_CHARS} distinct characters"
    return None


class ServeSettings(Section):
    """The HTTP and gRPC front ends, their workers, limits and token.

    Its validation errors never show inputs: they can hold the token.
    """

    # Validation errors of this section can carry the token: their text never shows inputs
    # (load_settings reports them through _describe, which redacts).
    model_config = ConfigDict(hide_input_in_errors=True)

    enabled: bool = True
    host: str = "0.0.0.0"
    http_port: int = Field(8080, ge=0, le=65535)
    grpc_enabled: bool = True
    grpc_port: int = Field(8081, ge=0, le=65535)
    grpc_workers: int = Field(8, ge=1)
    # Serving processes, beside the learner's own. One answers thousands of small requests a
    # second; more help only where there are cores for them.
    workers: int = Field(1, ge=1, le=64)
    # torch's intra-op threads in each serving process (0: torch's default). Requests already
    # run side by side on gRPC's threads and across serving processes.
    torch_threads: int = Field(1, ge=0)
    # The name clients address in /v2/models/{name}; one model per daemon.
    model_name: str = Field("streamlearn", pattern=r"^[A-Za-z0-9_.-]+$")
    # The input tensor's name in model metadata and infer requests.
    input_name: str = "input"
    publish_interval_ms: int = Field(500, ge=10)
    # Checked before parsing: a bigger HTTP body is answered 413 unread (chunked ones too).
    max_body_bytes: int = Field(4_194_304, ge=1_024)
    grpc_max_message_bytes: int = Field(4_194_304, ge=1_024)
    max_batch_rows: int = Field(4_096, ge=1)
    # HTTP infer requests up to this many rows run on the event loop itself (fastest for
    # small models); larger ones, or all with 0, run on worker threads so a slow forward
    # pass cannot hold up other requests.
    inline_max_rows: int = Field(64, ge=0)
    # Samples waiting in the POST /v1/learn queue; beyond this requests get 429.
    learn_queue_samples: int = Field(10_000, ge=1)
    # Bearer token for /v1/learn and /v1/checkpoint (and infer when auth_infer). Without a
    # token those write endpoints are refused: learning from anyone who can reach the port
    # is never a default.
    auth_token: SecretStr | None = None
    auth_token_file: Path | None = None
    auth_infer: bool = False
    # SIGTERM: readiness turns 503, requests are still served this long so load balancers
    # stop sending, then in-flight requests get drain_timeout_s to finish.
    shutdown_delay_s: float = Field(1.0, ge=0)
    drain_timeout_s: float = Field(5.0, ge=0)

    @field_validator("auth_token")
    @classmethod
    def _token_is_secret(cls, value: SecretStr | None) -> SecretStr | None:
        problem = token_problem(value.get_secret_value()) if value is not None else None
        if problem is not None:
            raise ValueError(f"the token is {problem}; {TOKEN_HINT}")
        return value

    @model_validator(mode="after")
    def _one_token_source(self) -> ServeSettings:
        if self.auth_token is not None and self.auth_token_file is not None:
            raise ValueError("set auth_token or auth_token_file, not both")
        return self
