"""docs/api.md's model metadata examples are what a running server answers, word for word.

Each example is served by a model configured as the example says (a classifier with the
feature names shown, a regressor without), and only the version, a count of steps, may
differ.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.serving.conftest import Running, ready, wait_until

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def documented_metadata() -> list[dict[str, Any]]:
    """The JSON blocks of the "Model metadata" section, in order."""
    text = API_DOC.read_text()
    section = text.split("### Model metadata", 1)[1].split("\n### ", 1)[0]
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", section, re.S)]


def _serve(
    service_factory: Callable[..., Running],
    model: dict[str, Any],
    make_record: Callable[[random.Random], dict[str, Any]],
) -> dict[str, Any]:
    running = service_factory(wait_ready=False, records=0, model=model)
    rng = random.Random(1)
    running.source.add([json.dumps(make_record(rng)).encode() for _ in range(300)])
    wait_until(lambda: ready(running), 60, "the model to be ready")
    metadata: dict[str, Any] = running.http.get("/v2/models/streamlearn").json()
    return metadata


def _same_but_versions(served: dict[str, Any], documented: dict[str, Any]) -> None:
    assert [v.isdigit() for v in documented["versions"]] == [True]
    assert [v.isdigit() for v in served["versions"]] == [True]
    assert {**served, "versions": documented["versions"]} == documented


def test_the_documented_examples_are_a_classifier_and_a_regressor() -> None:
    classifier, regressor = documented_metadata()
    assert [o["name"] for o in classifier["outputs"]] == [
        "predictions",
        "probabilities",
        "classes",
        "experts",
    ]
    assert [o["name"] for o in regressor["outputs"]] == ["predictions", "experts"]


def test_classifier_metadata_is_what_the_doc_shows(service_factory: Callable[..., Running]) -> None:
    documented = documented_metadata()[0]
    names = documented["inputs"][0]["parameters"]["feature_names"]
    served = _serve(
        service_factory,
        {"features": names},
        lambda rng: {"x": {name: rng.uniform(-1, 1) for name in names}, "y": rng.randrange(2)},
    )
    _same_but_versions(served, documented)


def test_regressor_metadata_is_what_the_doc_shows(service_factory: Callable[..., Running]) -> None:
    documented = documented_metadata()[1]
    width = documented["inputs"][0]["shape"][1]
    served = _serve(
        service_factory,
        {"task": "regression"},
        lambda rng: {"x": [rng.uniform(-1, 1) for _ in range(width)], "y": rng.uniform(-1, 1)},
    )
    _same_but_versions(served, documented)
