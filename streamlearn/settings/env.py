"""Settings from ``STREAMLEARN_<SECTION>__<KEY>`` environment variables, read strictly.

pydantic-settings' own reader raised a traceback for a value that was not JSON where it
expected some (exit 1, nothing naming the variable) and silently ignored a misspelled
section. This reader turns each variable into the nested mapping the YAML file would give:

- a name splits on ``__`` into a path, lower-cased: ``STREAMLEARN_MODEL__HIDDEN`` is
  ``model.hidden``; ``STREAMLEARN_KAFKA`` alone is the whole ``kafka`` section;
- a value starting with ``[`` or ``{`` is JSON (lists and mappings), ``null`` is null, and
  anything else stays a string for validation to convert (``3``, ``0.5``, ``true``);
- a name with ``__`` whose first part is no section is an error: it was meant as a setting.
  Names without ``__`` that are no section (``STREAMLEARN_AUTH_TOKEN`` for Compose,
  ``STREAMLEARN_BIND``) belong to other tools and are left alone.

Every problem is one line naming the variable; all of them are reported together.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from streamlearn.core.errors import SettingsError

PREFIX = "STREAMLEARN_"
DELIMITER = "__"


def read_environment(environ: Mapping[str, str], sections: Collection[str]) -> dict[str, Any]:
    """The settings the environment gives, as nested mappings; SettingsError if any is bad."""
    data: dict[str, Any] = {}
    problems: list[str] = []
    for name in sorted(environ):
        if not name.upper().startswith(PREFIX):
            continue
        path = name[len(PREFIX) :].lower().split(DELIMITER)
        if path[0] not in sections:
            if len(path) > 1:
                problems.append(
                    f"{name}: unknown section {path[0]!r}; sections: {', '.join(sections)}"
                )
            continue
        if not all(path):
            problems.append(f"{name}: empty key between '{DELIMITER}' delimiters")
            continue
        try:
            value = _value(environ[name])
        except ValueError as exc:
            problems.append(f"{name}: not valid JSON ({exc})")
            continue
        _put(data, path, value)
    if problems:
        raise SettingsError(problems)
    return data


def merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, mappings merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _value(raw: str) -> Any:
    text = raw.strip()
    if text[:1] in ("[", "{"):
        return json.loads(text)
    return None if text == "null" else raw


def _put(data: dict[str, Any], path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    current = node.get(path[-1])
    node[path[-1]] = (
        merge(current, value) if isinstance(current, dict) and isinstance(value, Mapping) else value
    )
