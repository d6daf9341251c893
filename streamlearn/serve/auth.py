"""Bearer-token checks shared by HTTP and gRPC.

Two scopes: ``write`` (POST /v1/learn, POST /v1/checkpoint) always needs the token, and with
no token configured those endpoints are refused outright; ``read`` (infer, metadata, /v1
reads) needs it only when ``serve.auth_infer`` is set. Probes and /metrics never do, so
orchestrators and scrapers work without secrets.
"""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Literal

from streamlearn.core.errors import RequestError, SettingsError
from streamlearn.serve.settings import TOKEN_HINT, ServeSettings, token_problem

Scope = Literal["read", "write"]


class TokenAuth:
    """Checks bearer tokens for the read and write scopes, in constant time.

    With no token configured, writes are refused outright.
    """

    def __init__(self, token: str | None, protect_reads: bool) -> None:
        self._token = token.encode() if token else None
        self.protect_reads = protect_reads

    @classmethod
    def from_settings(cls, settings: ServeSettings) -> TokenAuth:
        token = settings.auth_token.get_secret_value() if settings.auth_token else None
        if settings.auth_token_file is not None:
            token = read_token_file(settings.auth_token_file)
        if settings.auth_infer and token is None:
            raise SettingsError(
                ["serve.auth_infer: needs serve.auth_token or serve.auth_token_file"]
            )
        return cls(token, settings.auth_infer)

    @property
    def writes_enabled(self) -> bool:
        return self._token is not None

    def check(self, scope: Scope, authorization: str | None) -> None:
        """Raise :class:`RequestError` unless ``authorization`` grants ``scope``."""
        if scope == "read" and not self.protect_reads:
            return
        if self._token is None:
            raise RequestError(
                403,
                "writes_disabled",
                "this endpoint is off: set serve.auth_token or serve.auth_token_file to enable it",
            )
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise RequestError(
                401, "unauthorized", "missing bearer token (header 'Authorization: Bearer <token>')"
            )
        if not hmac.compare_digest(given.strip().encode(), self._token):
            raise RequestError(401, "unauthorized", "invalid bearer token")


def read_token_file(path: Path) -> str:
    """The token in ``path``, held to the rules of ``serve.auth_token``. Errors name the file,
    never what it holds: a mounted secret with the wrong content is still a secret."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise _file_error(path, f"cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise _file_error(path, "not UTF-8 text") from None
    if not token:
        raise _file_error(path, "it is empty")
    problem = token_problem(token)
    if problem is not None:
        raise _file_error(path, f"its token is {problem}; {TOKEN_HINT}")
    return token


def _file_error(path: Path, problem: str) -> SettingsError:
    return SettingsError([f"serve.auth_token_file: {path}: {problem}"])
