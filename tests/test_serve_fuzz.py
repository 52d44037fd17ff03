"""Fuzz the HTTP API from its own OpenAPI schema (schemathesis, FakeEngine, bounded examples).

Every operation gets schema-valid and schema-violating requests; the checks are: no 5xx, every
status code is one the schema declares, and every body matches its declared schema (error
bodies included).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from conftest import make_tiny_prepared
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

from gensar.serve.app import create_app
from gensar.serve.service import ServeConfig, Service

EXAMPLES = 40  # per operation and mode; the whole file runs in well under a minute
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
OPERATIONS = ["POST /recommend", "POST /search", "POST /suggest-query", "POST /events", "POST /items",
              "GET /items/{item_id}", "GET /users", "GET /users/{user_id}/history", "GET /health"]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory):
    run = tmp_path_factory.mktemp("fuzz") / "run"
    make_tiny_prepared().save(run / "data")
    service = Service.open(run, ServeConfig(engine="fake", max_wait_ms=0))
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(service))
    service.close()


def test_every_operation_is_fuzzed(api_schema):
    found = sorted(op.ok().label for op in api_schema.get_all_operations())
    assert found == sorted(OPERATIONS)


ANSWERING = {"POST /recommend", "POST /search", "POST /suggest-query", "GET /users", "GET /users/{user_id}/history"}
# GET /health takes no input, so it has no schema-violating request.
CASES = [(label, mode) for label in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if not (label == "GET /health" and mode == GenerationMode.NEGATIVE)]


@pytest.mark.parametrize(("label", "mode"), CASES, ids=[f"{label} {mode.value}" for label, mode in CASES])
def test_api_never_fails_and_conforms_to_its_schema(api_schema, label, mode):
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    def run(case):
        statuses.append(case.call_and_validate(checks=CHECKS).status_code)

    statuses: list[int] = []
    run()
    assert statuses  # the strategy produced requests
    if label in ANSWERING and mode == GenerationMode.POSITIVE:
        assert 200 in statuses  # schema-valid requests are answered, not all rejected
    if label.startswith("POST") and mode == GenerationMode.NEGATIVE:
        assert all(400 <= s < 500 for s in statuses)  # schema-violating bodies are all rejected
