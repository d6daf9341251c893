"""The fenced blocks of README.md and docs/*.md, and how a doc's shown output is matched.

Conventions (also in README.md, "Examples in the docs"):

- A block in ``sh``, ``bash``, ``shell`` or ``console`` is a shell example; one in ``http`` is
  an HTTP request (request line, headers, a blank line, the body). Each is run by
  tests/docs/test_examples.py against a real daemon on the embedded broker.
- Every block names its language. Blocks in a data language (``text``, ``json``, ``yaml``,
  ...) are not run, but one whose lines look like a command (a ``$ `` prompt, an HTTP
  request line, or a line a shell would run that starts with ``curl``, ``streamlearn``,
  ``docker``, ...) must be written as an example or be marked.
- ``<!-- not run in CI: REASON -->`` on the line before a fence: the block is not run, for
  that reason (required).
- ``<!-- output of the example above -->`` on the line before a fence: that block is the
  expected output of the nearest example above it in the same file. In a ``console`` block,
  the lines after each ``$ `` command are its expected output.

How output is matched (``matches``):

- JSON (the expected text parses as JSON): the actual output must parse as JSON of the same
  structure: objects with the same keys, arrays of the same length, strings, booleans and
  null equal, any number for a number (learned values, versions and timings vary), and a
  string of digits for a string of digits (v2 sends versions and ids as strings). The
  string ``"..."`` matches any value; as the last element of an array, any further elements.
- Text: line by line, trailing spaces ignored; ``...`` inside a line matches any text, and a
  line that is only ``...`` matches any number of lines.
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))]

SHELL = {"sh", "bash", "shell", "console"}
HTTP = {"http"}
DATA = {
    "text",
    "json",
    "jsonl",
    "yaml",
    "yml",
    "toml",
    "ini",
    "python",
    "proto",
    "promql",
    "diff",
    "csv",
    "dockerfile",
}
COMMANDS = {
    "curl",
    "wget",
    "http",
    "streamlearn",
    "make",
    "docker",
    "kubectl",
    "helm",
    "python",
    "python3",
    "pip",
    "export",
    "openssl",
    "grpcurl",
    "git",
    "tansu",
    "promtool",
    "pytest",
}

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})\s*(?P<lang>[^\s`{]*)")
NOT_RUN = re.compile(r"^\s*<!--\s*not run in CI\b:?(?P<reason>.*?)-->\s*$", re.IGNORECASE)
OUTPUT_OF = re.compile(r"^\s*<!--\s*output of the example above\s*-->\s*$", re.IGNORECASE)
HTTP_LINE = re.compile(r"^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) /\S*")


@dataclass
class Block:
    path: str  # relative to the repository root
    line: int  # the opening fence's line, 1-based
    lang: str
    text: str  # the content, the fence's indentation removed
    not_run: str | None = None  # the reason, "" when the marker gives none
    output_of_above: bool = False

    @property
    def id(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def runnable(self) -> bool:
        return self.lang in SHELL or self.lang in HTTP


def blocks(path: str, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``path`` (or of ``text``, named ``path``)."""
    lines = ((ROOT / path).read_text() if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = FENCE.match(lines[j])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not lines[j].strip().strip(fence[0])
            ):
                break
            body.append(
                lines[j][indent:]
                if lines[j][:indent].isspace() or not indent
                else lines[j].lstrip()
            )
            j += 1
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = NOT_RUN.match(before)
        found.append(
            Block(
                path,
                i + 1,
                opening["lang"].lower(),
                "\n".join(body) + "\n",
                not_run=marker["reason"].strip() if marker else None,
                output_of_above=bool(OUTPUT_OF.match(before)),
            )
        )
        i = j + 1
    return found


def all_blocks() -> list[Block]:
    return [block for path in DOCS for block in blocks(path)]


def looks_like_command(line: str) -> bool:
    line = line.strip()
    if line.startswith("$ ") or HTTP_LINE.match(line):
        return True
    words = line.split()
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words.pop(0)
    if not words or words[0] not in COMMANDS:
        return False
    # `streamlearn run (supervisor: ...)` in a diagram is no command: a shell would refuse it.
    return subprocess.run(["bash", "-n", "-c", line], capture_output=True).returncode == 0


def problems(block: Block) -> list[str]:
    """Why a block breaks the conventions; empty when it keeps them."""
    if block.not_run is not None:
        return (
            []
            if block.not_run
            else [f"{block.id}: 'not run in CI' needs a reason (<!-- not run in CI: why -->)"]
        )
    if not block.lang:
        return [
            f"{block.id}: a fenced block must name its language (sh, console, http for "
            "examples; text, json, yaml, ... for the rest)"
        ]
    if block.runnable or block.output_of_above:
        return []
    if block.lang not in DATA:
        return [
            f"{block.id}: unknown language {block.lang!r} (examples: sh, bash, shell, "
            f"console, http; not run: {', '.join(sorted(DATA))})"
        ]
    commands = [line for line in block.text.splitlines() if looks_like_command(line)]
    if commands:
        return [
            f"{block.id}: a {block.lang} block with a command in it ({commands[0]!r}): "
            "make it an sh, console or http example, or mark it "
            "<!-- not run in CI: why -->"
        ]
    return []


def expected_outputs(found: list[Block]) -> dict[str, Block]:
    """Example id -> the block marked as its output."""
    out: dict[str, Block] = {}
    for i, block in enumerate(found):
        if block.output_of_above:
            above = [b for b in found[:i] if b.path == block.path and b.runnable]
            if not above:
                raise AssertionError(
                    f"{block.id}: 'output of the example above', but there "
                    "is no example above it in this file"
                )
            out[above[-1].id] = block
    return out


# --- matching shown output ---------------------------------------------------------------

ANY = "..."


def matches(expected: str, actual: str) -> str | None:
    """None when ``actual`` matches the doc's ``expected`` output, else where it differs."""
    try:
        want = json.loads(expected)
    except ValueError:
        return _match_text(expected, actual)
    try:
        got = json.loads(actual)
    except ValueError:
        return f"expected JSON, got {actual[:300]!r}"
    return _match_json(want, got, "$")


def _match_json(want: Any, got: Any, where: str) -> str | None:
    if want == ANY:
        return None
    if isinstance(want, dict):
        if not isinstance(got, dict):
            return f"{where}: expected an object, got {got!r}"[:300]
        if set(want) != set(got):
            return (
                f"{where}: keys differ: missing {sorted(set(want) - set(got))}, "
                f"not in the doc {sorted(set(got) - set(want))}"
            )
        for key in want:
            if (error := _match_json(want[key], got[key], f"{where}.{key}")) is not None:
                return error
        return None
    if isinstance(want, list):
        if not isinstance(got, list):
            return f"{where}: expected an array, got {got!r}"[:300]
        open_ended = bool(want) and want[-1] == ANY
        fixed = want[:-1] if open_ended else want
        if len(got) < len(fixed) or (not open_ended and len(got) != len(fixed)):
            return f"{where}: expected {len(fixed)} elements, got {len(got)}"
        for i, item in enumerate(fixed):
            if (error := _match_json(item, got[i], f"{where}[{i}]")) is not None:
                return error
        return None
    if isinstance(want, bool) or want is None:
        return None if got is want else f"{where}: expected {want!r}, got {got!r}"
    if isinstance(want, int | float):
        number = isinstance(got, int | float) and not isinstance(got, bool)
        return None if number else f"{where}: expected a number, got {got!r}"
    if isinstance(want, str) and want.isdigit():
        digits = isinstance(got, str) and got.isdigit()
        return None if digits else f"{where}: expected a string of digits, got {got!r}"
    return None if got == want else f"{where}: expected {want!r}, got {got!r}"


def _match_text(expected: str, actual: str) -> str | None:
    want = [line.rstrip() for line in expected.strip("\n").splitlines()]
    got = [line.rstrip() for line in actual.strip("\n").splitlines()]
    if _lines(want, got):
        return None
    return "output differs:\n--- expected\n" + "\n".join(want) + "\n--- got\n" + "\n".join(got)


def _lines(want: list[str], got: list[str]) -> bool:
    if not want:
        return not got
    if want[0] == ANY:
        return any(_lines(want[1:], got[i:]) for i in range(len(got) + 1))
    if not got:
        return False
    pattern = ".*".join(re.escape(part) for part in want[0].split(ANY))
    return re.fullmatch(pattern, got[0]) is not None and _lines(want[1:], got[1:])
