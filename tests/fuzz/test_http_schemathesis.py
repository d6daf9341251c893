"""Schemathesis against the OpenAPI document a running service serves (RELIABILITY.md test K).

Every operation of /openapi.json (the v2 Open Inference Protocol endpoints, infer included,
and streamlearn's /v1) gets schemathesis' coverage cases (boundary values, missing and
wrong-typed fields, undeclared methods) and fuzzed cases from both generation modes
(positive: valid per the document; negative: invalid somewhere), twice: with the write token,
and without any token. Each response must not be a 5xx and must conform to the document
where schemathesis can tell (status code, content type, headers, body schema), negative data
must be refused, an undeclared method must be a 405 naming the allowed ones, and endpoints
that declare the token must refuse requests without it.

Not checked: ``positive_data_acceptance``. The document cannot say that this model takes
4 features or is named "streamlearn", so most schema-valid learn and infer requests are
rightly refused with a 4xx. Half the fuzzed cases use the real model name so that infer gets
past the 404, and cases sent with the binary extension's header lose it half the time so
that the JSON body is read.

The number of cases and the status codes are printed (run with ``-s``) and recorded as
properties in JUnit reports: "fuzz cases tried, 5xx = 0".
"""

from __future__ import annotations

import collections
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from streamlearn.serve import binary
from tests.fuzz.conftest import AUTH
from tests.serving.conftest import Running

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    unsupported_method,
    missing_required_header,
    ignored_auth,
]
# Fuzzed cases per operation and generation mode: with the token, and without.
EXAMPLES = {"token": 30, "anonymous": 12}
OPERATIONS = 14  # every operation the document lists; a new one must be fuzzed too
MODEL = "streamlearn"
PHASES = (Phase.explicit, Phase.generate) + (
    (Phase.shrink,) if os.environ.get("STREAMLEARN_FUZZ_SHRINK") else ()
)


@dataclass
class Tally:
    cases: collections.Counter[str] = field(default_factory=collections.Counter)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    server_errors: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{run}: {n} cases" for run, n in sorted(self.cases.items())]
        lines.append(
            "status codes: "
            + ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        )
        lines.append(f"5xx: {len(self.server_errors)}")
        return "\n".join(lines)


@pytest.fixture(scope="module")
def api(fuzzed: Running) -> Any:
    config = schemathesis.Config.from_dict(
        {
            "generation": {"deterministic": True, "database": "none"},
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_url(f"{fuzzed.base}/openapi.json", config=config)


def send(
    case: Any, headers: dict[str, str], session: requests.Session, run: str, tally: Tally
) -> None:
    response = case.call(headers=headers, session=session, timeout=30)
    tally.cases[run] += 1
    tally.statuses[str(response.status_code)] += 1
    if response.status_code >= 500:
        tally.server_errors.append(
            f"{run}: {case.as_curl_command(headers=headers)} -> "
            f"{response.status_code} {response.text[:300]}"
        )
    case.validate_response(response, checks=CHECKS, headers=headers)


def failed(tally: Tally, run: str, where: str, exc: BaseException) -> None:
    tally.failures.append(f"[{run}] {where}: {type(exc).__name__}: {str(exc)[:1500]}")


def fuzz_operation(
    api: Any, operation: Any, headers: dict[str, str], run: str, tally: Tally
) -> None:
    session = requests.Session()
    coverage = api.config.generation_for(operation=operation, phase="coverage")
    for case in api.iter_coverage_cases(
        operation, generation_modes=list(GenerationMode), generation_config=coverage
    ):
        try:
            send(case, headers, session, run, tally)
        except (Exception, BaseExceptionGroup) as exc:
            failed(tally, run, f"{operation.label} coverage {case.method}", exc)
    for mode in GenerationMode:
        strategy = st.one_of(operation.as_strategy(generation_mode=mode))
        if "{name}" in operation.path:
            strategy |= operation.as_strategy(generation_mode=mode, path_parameters={"name": MODEL})

        @settings(
            max_examples=EXAMPLES[run],
            deadline=None,
            derandomize=True,
            database=None,
            phases=PHASES,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy, json_body=st.booleans())
        def fuzz(case: Any, json_body: bool) -> None:
            if json_body and case.headers:
                case.headers.pop(binary.HEADER, None)
            send(case, headers, session, run, tally)

        try:
            fuzz()
        except hypothesis.errors.Unsatisfiable:
            pass  # nothing in this operation can be made invalid (no parameters, no body)
        except (Exception, BaseExceptionGroup) as exc:
            failed(tally, run, f"{operation.label} {mode.value}", exc)


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_answer_outside_the_document(
    api: Any, fuzzed: Running, record_property: Callable[[str, object], None]
) -> None:
    operations = [result.ok() for result in api.get_all_operations()]
    labels = {operation.label for operation in operations}
    assert len(labels) == OPERATIONS, sorted(labels)
    assert "POST /v2/models/{name}/infer" in labels
    tally = Tally()
    for run, headers in (("token", AUTH), ("anonymous", {})):
        for operation in operations:
            fuzz_operation(api, operation, headers, run, tally)
    summary = tally.summary()
    print(f"\nschemathesis {schemathesis.__version__}, {len(operations)} operations\n{summary}")
    record_property("fuzz_cases", sum(tally.cases.values()))
    record_property("fuzz_5xx", len(tally.server_errors))
    assert fuzzed.thread.is_alive(), "the learner stopped"
    assert fuzzed.http.get("/v2/health/ready").status_code == 200
    assert not tally.server_errors, "\n".join(tally.server_errors)
    assert not tally.failures, "\n\n".join(tally.failures)
