"""The import graph of streamlearn/: every import points down the layers, and none circles.

The layers, lowest first. A module belongs to the longest name in ``LAYERS`` that prefixes
it; it may import any part of its own layer or a lower one, never one above (what keeps
parts of one layer from leaning on each other both ways is the test for circles). Imports
inside functions and under ``TYPE_CHECKING`` count too: a lazy import is still a
dependency, and a type-only one still couples the parts. The generated gRPC
stubs (``serve/proto``) are outside the rule.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "streamlearn"
GENERATED = "streamlearn.serve.proto"

LAYERS: tuple[tuple[str, ...], ...] = (
    # what everything may use: errors, value types, the settings base class, logs
    (
        "streamlearn._version",
        "streamlearn.core.errors",
        "streamlearn.core.types",
        "streamlearn.core.section",
        "streamlearn.core.logging",
    ),
    # the contracts and the learner's leaves
    (
        "streamlearn.core.protocols",
        "streamlearn.core.extensions",
        "streamlearn.core.models",
        "streamlearn.core.preprocess",
        "streamlearn.core.prequential",
        "streamlearn.core.fastdecode",
        "streamlearn.core.codecs",
        "streamlearn.core.settings",
    ),
    ("streamlearn.core.drift", "streamlearn.core.experts", "streamlearn.core.labels"),
    ("streamlearn.core.adapt", "streamlearn.core.predictor", "streamlearn.core.admission"),
    ("streamlearn.core.engine", "streamlearn.core"),
    # the shell: metrics, I/O, settings composed, serving, the daemon, processes, commands
    # each shell package's own settings section (they import only core.section)
    (
        "streamlearn.sources.settings",
        "streamlearn.checkpoint.settings",
        "streamlearn.serve.settings",
        "streamlearn.runtime.settings",
        "streamlearn.sync.settings",
    ),
    ("streamlearn.metrics", "streamlearn.streams", "streamlearn.testing"),
    ("streamlearn.sources", "streamlearn.checkpoint"),
    ("streamlearn.sinks",),
    ("streamlearn.settings",),
    ("streamlearn.serve",),
    # replicas' rounds run inside the learner loop and checkpoint through its checkpointer
    ("streamlearn.daemon", "streamlearn.sync"),
    ("streamlearn.runtime",),
    ("streamlearn.app",),
    ("streamlearn", "streamlearn.__main__"),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    found = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: path for name, path in found.items() if not name.startswith(GENERATED)}


def imports(path: Path, name: str) -> Iterator[str]:
    """Every streamlearn module ``path`` imports, by absolute name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name.split(".")[0] == "streamlearn")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base.split(".")[0] != "streamlearn":
                continue
            yield base
            # ``from streamlearn.x import y`` may name the module x.y
            yield from (f"{base}.{a.name}" for a in node.names)


def part_of(module: str) -> str:
    names = [n for layer in LAYERS for n in layer]
    matches = [n for n in names if module == n or module.startswith(n + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS"
    return max(matches, key=len)


def layer_of(part: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def graph() -> dict[str, set[str]]:
    known = modules()
    return {
        name: {m for m in imports(path, name) if m in known and m != name}
        for name, path in known.items()
    }


def points_up(module: str, target: str) -> bool:
    """True when ``module`` may not import ``target``: a part of a higher layer."""
    return layer_of(part_of(target)) > layer_of(part_of(module))


def upward_imports() -> list[str]:
    return [
        f"{module} -> {target}"
        for module, targets in graph().items()
        for target in sorted(targets)
        if points_up(module, target)
    ]


def circles() -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan's algorithm)."""
    edges = graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def test_every_module_has_a_layer() -> None:
    for module in modules():
        part_of(module)


def test_no_import_points_up() -> None:
    assert upward_imports() == []


def test_no_circles() -> None:
    assert circles() == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from streamlearn.core.engine import Engine\n", ["streamlearn.core.engine"]),
        ("from . import pool\n", ["streamlearn.core.experts", "streamlearn.core.experts.pool"]),
        ("from .band import LossBand\n", ["streamlearn.core.experts.band"]),
        ("import streamlearn.core.types\n", ["streamlearn.core.types"]),
        ("import torch\n", []),
    ],
)
def test_imports_resolve_relative_and_absolute_names(
    tmp_path: Path, source: str, expected: list[str]
) -> None:
    path = tmp_path / "pool.py"
    path.write_text(source)
    found = [m for m in imports(path, "streamlearn.core.experts.pool") if m in set(expected)]
    assert sorted(set(found)) == sorted(expected)


@pytest.mark.parametrize(
    ("module", "target", "refused"),
    [
        ("streamlearn.core.engine", "streamlearn.daemon.loop", True),  # up
        ("streamlearn.core.drift.monitor", "streamlearn.settings", True),  # into the shell
        ("streamlearn.daemon.loop", "streamlearn.core.engine", False),  # down
        ("streamlearn.core.drift.monitor", "streamlearn.core.experts.pool", False),  # level
        ("streamlearn.core.experts.pool", "streamlearn.core.experts.band", False),  # own part
    ],
)
def test_the_rule_refuses_imports_from_above(module: str, target: str, refused: bool) -> None:
    assert points_up(module, target) is refused
