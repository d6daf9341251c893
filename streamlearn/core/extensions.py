"""User code named in settings as ``"package.module:name"``, loaded and checked in one way.

Three settings name user code: ``model.factory`` (an expert or its network),
``drift.detector`` and ``adapt.method`` (beside their built-in names). Each is loaded by
:func:`load_object` and what it builds is checked by :func:`require_members` against the
protocol it must implement, when it is built: a missing member is an error that names the
setting and the member, never an ``AttributeError`` in the middle of a stream.

Names come from the local configuration only, never from the network. This module imports
neither torch nor the user's code until asked: settings validation checks only the form.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from typing import Any

from streamlearn.core.errors import SettingsError, StreamlearnError

# "package.module:name": dotted identifiers, a colon, one identifier.
_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")

Fail = Callable[[str], StreamlearnError]


def _settings_error(message: str) -> StreamlearnError:
    return SettingsError([message])


def is_spec(value: str) -> bool:
    """Whether ``value`` has the form ``"package.module:name"``."""
    return _SPEC.match(value) is not None


def load_object(spec: str, setting: str, fail: Fail = _settings_error) -> Callable[..., Any]:
    """The callable ``spec`` names; ``fail`` makes the error (the message names ``setting``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise fail(f"{setting}: expected 'package.module:name', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise fail(f"{setting}: cannot import {module_name!r} ({exc})") from None
    found = getattr(module, attr, None)
    if found is None:
        raise fail(f"{setting}: module {module_name!r} has no {attr!r}")
    if not callable(found):
        raise fail(f"{setting}: {spec!r} is not a class or function (a {type(found).__name__})")
    return found  # type: ignore[no-any-return]


def build_checked(
    make: Callable[..., Any],
    protocol: type,
    setting: str,
    fail: Fail = _settings_error,
    **kwargs: Any,
) -> Any:
    """``make(**kwargs)``, checked against ``protocol``: whatever goes wrong (it raises, or
    what it built lacks a member) is raised by ``fail``, naming ``setting``."""
    try:
        built = make(**kwargs)
    except Exception as exc:
        name = getattr(make, "__qualname__", repr(make))
        raise fail(f"{setting}: {name}(...) raised {type(exc).__name__}: {exc}") from exc
    require_members(built, protocol, setting, fail)
    return built


def protocol_members(protocol: type) -> list[str]:
    """The public members (methods and properties) a ``typing.Protocol`` declares."""
    names: set[str] = set()
    for base in protocol.__mro__:
        if base is object or not getattr(base, "_is_protocol", False):
            continue
        names.update(vars(base))
        names.update(getattr(base, "__annotations__", {}))
    return sorted(n for n in names if not n.startswith("_"))


def missing_members(obj: object, protocol: type) -> list[str]:
    """The members of ``protocol`` that ``obj`` lacks."""
    return [name for name in protocol_members(protocol) if not hasattr(obj, name)]


def require_members(
    obj: object, protocol: type, setting: str, fail: Fail = _settings_error, hint: str = ""
) -> None:
    """Raise (``fail``) naming each member of ``protocol`` that ``obj`` lacks, and what it
    is for (the member's docstring in :mod:`streamlearn.core.protocols`); ``hint`` ends it."""
    missing = missing_members(obj, protocol)
    if not missing:
        return
    lines = [f"  {name}: {_purpose(protocol, name)}" for name in missing]
    raise fail(
        f"{setting}: it built a {type(obj).__name__}, which lacks "
        + ", ".join(missing)
        + f" of streamlearn.core.protocols.{protocol.__name__}:\n"
        + "\n".join(lines)
        + (f"\n{hint}" if hint else "")
    )


def _purpose(protocol: type, name: str) -> str:
    member = getattr(protocol, name, None)
    doc = getattr(member, "__doc__", None) or ""
    return " ".join(doc.split()) or "a member every implementation needs"


def builtin_or_spec(value: str, builtin: tuple[str, ...]) -> str:
    """``value`` if it names a built-in or has the form ``package.module:name``; the settings
    validators' check. Only the form: importing user code (and torch with it) is left to
    whoever builds it, not to the supervisor that validates settings."""
    if value in builtin or is_spec(value):
        return value
    raise ValueError(f"one of {', '.join(builtin)}, or 'package.module:name' for your own")
