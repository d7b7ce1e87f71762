"""Requests generated from the service's own OpenAPI schema (schemathesis + hypothesis):
whatever a client sends, the answer is never a server error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from schemathesis import openapi

from coldrec.serve.app import create_app
from tests.test_serve import fresh

PER_OPERATION = 170


def _statuses_of_generated_calls(operation: Any) -> list[int]:
    """Call one operation with up to ``PER_OPERATION`` generated requests; the statuses.
    A 5xx fails at once, with the request as a curl command."""
    answers: list[int] = []

    @settings(max_examples=PER_OPERATION, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(case=operation.as_strategy())
    def call(case: Any) -> None:
        response = case.call()
        answers.append(response.status_code)
        assert response.status_code < 500, (case.as_curl_command(), response.text)

    call()
    return answers


def test_no_generated_request_gets_a_5xx(served_run: Path, tmp_path: Path) -> None:
    app = create_app(fresh(served_run, tmp_path))
    schema = openapi.from_asgi("/openapi.json", app)
    statuses: dict[str, list[int]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        statuses[operation.label] = _statuses_of_generated_calls(operation)
    assert len(statuses) >= 9 and sum(map(len, statuses.values())) >= 1_000, statuses
    assert all(any(s < 300 for s in answers) for answers in statuses.values()), statuses
