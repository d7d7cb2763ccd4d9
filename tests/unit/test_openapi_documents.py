"""The OpenAPI documents in docs/openapi are what the services serve, and they describe every
body a route takes (issue 9: 1 of 19 write routes showed a request schema before)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from services.cli.asyncapi import SERVICES, _build_documents

ROOT = Path(__file__).parents[2]
WRITE_METHODS = {"post", "put", "patch", "delete"}
# Write routes that take no body at all (the path says everything).
BODILESS = {
    ("inventory", "POST", "/v1/stocktakes/{stocktake_id}/submit"),
    ("inventory", "POST", "/v1/purchase-orders/{purchase_order_id}/cancel"),
    ("order_intake", "POST", "/v1/orders/{order_id}/release-hold"),
    ("order_intake", "DELETE", "/v1/rules/{rule_id}"),
}


@pytest.fixture(scope="module")
def served() -> dict[str, dict[str, Any]]:
    documents = asyncio.run(_build_documents())
    assert set(documents) == set(SERVICES)
    return {name: json.loads(json.dumps(openapi, default=str)) for name, (_, openapi) in documents.items()}


@pytest.mark.parametrize("name", SERVICES)
def test_the_committed_openapi_document_is_what_the_service_serves(served: dict[str, Any], name: str) -> None:
    committed = json.loads((ROOT / "docs" / "openapi" / f"{name}.json").read_text())
    assert committed == served[name], f"docs/openapi/{name}.json is stale: run `python -m services.cli.asyncapi`"


def _operations(served: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    return [(name, method.upper(), path, op) for name, doc in served.items()
            for path, item in doc["paths"].items() for method, op in item.items()]


def _describes(schema: dict[str, Any] | None) -> bool:
    """A schema that says something (FastAPI writes ``{"title": ...}`` alone for ``-> Any``)."""
    return bool(schema) and any(key in schema for key in ("$ref", "type", "items", "anyOf", "oneOf"))


def _resolves(doc: dict[str, Any], schema: dict[str, Any]) -> bool:
    refs = [schema["$ref"]] if "$ref" in schema else []
    return all(ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"] for ref in refs)


def test_every_write_route_that_takes_a_body_documents_its_schema(served: dict[str, Any]) -> None:
    writes = [(n, m, p, op) for n, m, p, op in _operations(served) if m.lower() in WRITE_METHODS]
    assert len(writes) >= 19
    missing = []
    for name, method, path, op in writes:
        if (name, method, path) in BODILESS:
            assert "requestBody" not in op, (name, method, path)
            continue
        content = op.get("requestBody", {}).get("content", {})
        schemas = [media.get("schema") for media in content.values()]
        if not schemas or not all(_describes(s) and _resolves(served[name], s) for s in schemas):
            missing.append(f"{name}: {method} {path}")
    assert not missing, f"write routes without a request schema: {missing}"


def test_every_route_documents_its_422_in_the_project_problem_shape(served: dict[str, Any]) -> None:
    for name, method, path, op in _operations(served):
        if not path.startswith("/v1/"):
            continue  # the host's own health and metrics routes
        answer = op["responses"]["422"]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/ProblemAnswer"}, (name, method, path)
    for doc in served.values():
        assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's {loc, msg, type}


def test_every_route_documents_the_body_of_its_success_answer(served: dict[str, Any]) -> None:
    # Integration tests check real answers against these documents (tests/documented_answers.py).
    missing = []
    for name, method, path, op in _operations(served):
        if not path.startswith("/v1/"):
            continue
        if set(op["responses"]) & {"200", "201", "202"} == set() and "204" in op["responses"]:
            continue  # answers nothing
        schemas = [media.get("schema") for status, answer in op["responses"].items() if status.startswith("2")
                   for media in answer.get("content", {}).values()]
        if not any(_describes(s) and _resolves(served[name], s) for s in schemas):
            missing.append(f"{name}: {method} {path}")
    assert not missing, f"routes whose success answer has no schema: {missing}"
