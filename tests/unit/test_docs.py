"""The docs: every metric the daemon exports is documented; every fenced block keeps the
conventions of tests/docs (examples run, or marked with a reason; see tests/docs/markdown.py)."""

import re
from pathlib import Path
from typing import cast

import pytest

from streamlearn.metrics import Metrics
from tests.docs import markdown
from tests.docs.markdown import Block, blocks, matches, problems

ROOT = Path(__file__).resolve().parents[2]


def test_every_metric_is_documented_in_operations() -> None:
    documented = (ROOT / "docs" / "operations.md").read_text()
    names = {m.name for m in Metrics().registry.collect() if m.name.startswith("streamlearn_")}
    missing = [
        name
        for name in sorted(names)
        if not re.search(rf"`({re.escape(name)}|{re.escape(name[12:])})(_total)?[`{{]", documented)
    ]
    assert not missing, f"undocumented metrics: {missing}"


# --- every example in README.md and docs/*.md is run or marked (tests/docs) --------------


def test_every_fenced_block_names_its_language_and_every_mark_a_reason() -> None:
    found = markdown.all_blocks()
    assert any(block.runnable and block.not_run is None for block in found)
    assert [p for block in found for p in problems(block)] == []


def test_every_output_marker_follows_an_example_and_every_xfail_names_one() -> None:
    from tests.docs import test_examples

    found = markdown.all_blocks()
    outputs = markdown.expected_outputs(found)
    assert all(not block.runnable for block in outputs.values())
    runnable = {block.id for block in found if block.runnable and block.not_run is None}
    assert set(test_examples.XFAIL) <= runnable, set(test_examples.XFAIL) - runnable


def _one(text: str) -> Block:
    [block] = blocks("doc.md", text)
    return block


def test_blocks_reads_language_markers_and_indented_fences() -> None:
    found = blocks(
        "doc.md",
        "a\n\n<!-- not run in CI: needs a cluster -->\n```sh\nkubectl x\n"
        "```\n\n- item\n\n  ```bash\n  curl -s localhost:8080\n  ```\n"
        "<!-- output of the example above -->\n~~~json\n{}\n~~~\n",
    )
    assert [(b.line, b.lang, b.not_run, b.output_of_above) for b in found] == [
        (4, "sh", "needs a cluster", False),
        (10, "bash", None, False),
        (14, "json", None, True),
    ]
    assert found[1].text == "curl -s localhost:8080\n"
    assert markdown.expected_outputs(found) == {"doc.md:10": found[2]}


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("```\nmake demo\n```\n", "must name its language"),
        ("```console-ish\n$ ls\n```\n", "unknown language"),
        ("```text\nserving: ...\ncurl -s localhost:8080/v2\n```\n", "a text block with a command"),
        ("```json\nPOST /v2/models/m/infer\n{}\n```\n", "a json block with a command"),
        ("<!-- not run in CI -->\n```sh\nmake demo\n```\n", "needs a reason"),
        ("<!-- not run in CI: -->\n```sh\nmake demo\n```\n", "needs a reason"),
    ],
)
def test_what_the_conventions_refuse(text: str, complaint: str) -> None:
    [problem] = problems(_one(text))
    assert complaint in problem


@pytest.mark.parametrize(
    "text",
    [
        "```sh\nanything at all\n```\n",
        "```text\nstreamlearn run (supervisor: sockets; no torch)\n |-- learner\n```\n",
        '```json\n{"x": [1, 2]}\n```\n',
        "<!-- not run in CI: needs Docker -->\n```text\ndocker run x\n```\n",
    ],
)
def test_what_the_conventions_take(text: str) -> None:
    assert problems(_one(text)) == []


def mismatch(doc: str, got: str) -> str:
    """What ``matches`` found wrong: there must be something."""
    found = matches(doc, got)
    assert found is not None
    return found


def test_shown_json_matches_structurally() -> None:
    doc = (
        '{"model_version": "1873", "id": "42", "ok": true, "n": 0.5, "items": [1, "..."],'
        ' "any": "...", "name": "streamlearn"}'
    )
    same = (
        '{"model_version": "7", "id": "9", "ok": true, "n": 3, "items": [2, 3, 4],'
        ' "any": {"x": 1}, "name": "streamlearn"}'
    )
    assert matches(doc, same) is None
    assert "keys differ" in mismatch('{"a": 1}', '{"a": 1, "b": 2}')
    assert "expected 2 elements" in mismatch("[1, 2]", "[1, 2, 3]")
    assert "expected 'INT64'" in mismatch('{"t": "INT64"}', '{"t": "BYTES"}')
    assert "a number" in mismatch('{"n": 1}', '{"n": "1"}')
    assert "digits" in mismatch('{"v": "12"}', '{"v": "v12"}')
    assert "expected True" in mismatch('{"b": true}', '{"b": false}')
    assert "expected JSON" in mismatch("{}", "not json")


def test_shown_text_matches_line_by_line_with_ellipses() -> None:
    assert (
        matches("sent 50000 records to ...\n", "sent 50000 records to streamlearn.samples\n")
        is None
    )
    assert matches("first\n...\nlast", "first\na\nb\nlast  ") is None
    assert matches("first\n...\nlast", "first\nlast") is None
    assert matches("path: ...", "path: x\nmore") is not None
    assert matches("a\nb", "a\nc") is not None


def test_console_commands_share_a_shell_and_each_output_is_matched(tmp_path: Path) -> None:
    import os
    from types import SimpleNamespace

    from tests.docs.test_examples import Served, logical_lines, run_console

    # A stand-in with the two fields run_console reads (workdir, env): no broker, no daemon.
    served = cast(Served, SimpleNamespace(workdir=tmp_path, env=dict(os.environ)))
    run_console(
        served,
        "$ export GREETING=hi\n$ echo $GREETING; echo there\nhi\n...\n"
        '$ printf \'{"v": "%s", "n": 3}\' \\\n    12\n'
        '{"v": "...", "n": 0}\n'
        '$ printf \'{"v": "7", "n": 1}\'\n{"v": "1873", "n": 0.5}\n',
    )
    with pytest.raises(AssertionError, match="expected 'hello'"):
        run_console(served, '$ echo \'"hi"\'\n"hello"\n')
    with pytest.raises(AssertionError, match="exited 3"):
        run_console(served, "$ (exit 3)\n")
    assert logical_lines("a \\\n  b\nc\n") == ["a \\\n  b\n", "c\n"]
