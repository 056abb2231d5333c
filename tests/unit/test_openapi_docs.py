"""The served OpenAPI document and the app's own error responses, in process (no Ray cluster)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from deployments import openapi_docs as docs
from deployments.completion_stream import Usage
from deployments.errors import model_not_found
from deployments.http_app import _validation_error_handler
from deployments.ingress import app  # registers every route group on the app
from deployments.openai_framing import CHAT, COMPLETION
from deployments.openai_protocol import ChatCompletionRequest, CompletionRequest
from deployments.resumable_generation import FailoverEvents


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return app.openapi()


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


def _refs(node: object) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for value in node for ref in _refs(value)]
    return []


def test_every_ref_resolves_in_components(document: dict[str, Any]) -> None:
    refs = set(_refs(document))
    assert refs, "the document should name its models by $ref"
    schemas = document["components"]["schemas"]
    assert all(ref.startswith(docs.REF_PREFIX) for ref in refs), refs
    assert {ref.removeprefix(docs.REF_PREFIX) for ref in refs} <= set(schemas)
    assert "$defs" not in str(document)


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    import json

    import jsonschema
    from schemathesis.specs.openapi.definitions import OPENAPI_31  # the OpenAPI 3.1 meta-schema

    errors = list(jsonschema.Draft202012Validator(OPENAPI_31).iter_errors(json.loads(json.dumps(document))))
    assert not errors, [f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]]


def test_every_route_is_documented(document: dict[str, Any]) -> None:
    routes = [r for r in app.routes if isinstance(r, APIRoute)]
    assert {"/health", "/ready", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v2",
            "/v2/models/{name}/infer", "/v1/vision/classify"} <= {r.path for r in routes}
    for route in routes:
        for method in route.methods:
            operation = document["paths"][route.path][method.lower()]
            assert "200" in operation["responses"], (method, route.path)
            if method == "POST":  # Triton's repository index alone takes an optional body
                assert operation["requestBody"]["required"] is (route.path != "/v2/repository/index"), route.path
            # the raw-Request handlers never answer FastAPI's 422
            assert "422" not in operation["responses"], (method, route.path)


@pytest.mark.parametrize(("path", "model"), [
    ("/v1/chat/completions", ChatCompletionRequest), ("/v1/completions", CompletionRequest)])
def test_request_bodies_are_the_models_the_handlers_parse_with(document: dict[str, Any], path: str,
                                                               model: type[BaseModel]) -> None:
    body = document["paths"][path]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": f"{docs.REF_PREFIX}{model.__name__}"}
    expected = model.model_json_schema(ref_template=docs.REF_PREFIX + "{model}")
    expected.pop("$defs", None)
    assert document["components"]["schemas"][model.__name__] == expected


def test_completion_errors_are_documented_with_the_error_body(document: dict[str, Any]) -> None:
    responses = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    for status in ("400", "404", "429", "503", "504"):
        assert responses[status]["content"]["application/json"]["schema"] == {
            "$ref": f"{docs.REF_PREFIX}ErrorResponse"}
    assert set(responses["200"]["content"]) == {"application/json", "text/event-stream"}


def test_response_models_match_what_the_code_returns() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=2, cached_tokens=1)
    docs.ChatCompletionResponse.model_validate(CHAT.full("chatcmpl-1", 1, "m", ["hi", ""], ["stop", "length"], usage))
    docs.CompletionResponse.model_validate(COMPLETION.full("cmpl-1", 1, "m", ["hi"], [None], usage))
    for framing, chunk_model in ((CHAT, docs.ChatCompletionChunk), (COMPLETION, docs.CompletionChunk)):
        chunk_model.model_validate(framing.chunk("id", 1, "m", 0, None, None, True, first=True))
        chunk_model.model_validate(framing.chunk("id", 1, "m", 1, "text", "stop", False))
        chunk_model.model_validate(framing.usage_chunk("id", 1, "m", usage))
    events = FailoverEvents()
    events.retried = 1
    docs.WarmserveExtension.model_validate({"failover": events.as_dict()})
    docs.ErrorResponse.model_validate(model_not_found("x", ["m"]).body())


def test_conflicting_schema_names_are_refused() -> None:
    class ErrorDetail(BaseModel):  # the same name as the documented error detail, another shape
        other: int

    class Holder(BaseModel):
        error: ErrorDetail

    with pytest.raises(docs.SchemaConflictError):
        docs.schema_ref(Holder)


def test_openapi_json_is_served_with_the_route_prefix_as_server() -> None:
    served = TestClient(app, root_path="/fake").get("/fake/openapi.json")
    assert served.status_code == 200
    assert served.json()["servers"][0] == {"url": "/fake"}
    assert "/v1/chat/completions" in served.json()["paths"]


def test_unknown_url_is_an_openai_404(client: TestClient) -> None:
    reply = client.post("/v1/nothing-here", json={})
    assert reply.status_code == 404
    assert reply.json() == {"error": {"message": "Invalid URL (POST /v1/nothing-here)",
                                      "type": "invalid_request_error", "param": None, "code": "not_found"}}


def test_wrong_method_is_an_openai_405_with_allow(client: TestClient) -> None:
    reply = client.get("/v1/chat/completions")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"
    assert reply.json()["error"]["code"] == "method_not_allowed"
    assert "allowed: POST" in reply.json()["error"]["message"]


def test_errors_under_v2_use_the_kserve_body(client: TestClient) -> None:
    reply = client.get("/v2/models/a/b/c/d")
    assert reply.status_code == 404
    assert reply.json() == {"error": "Invalid URL (GET /v2/models/a/b/c/d)"}
    prefixed = TestClient(app, root_path="/fake", raise_server_exceptions=False).get("/fake/v2/nope")
    assert prefixed.status_code == 404 and isinstance(prefixed.json()["error"], str)


def test_parameter_validation_errors_are_openai_400s() -> None:
    scratch = FastAPI()
    scratch.add_exception_handler(RequestValidationError, _validation_error_handler)

    @scratch.get("/items/{item}")
    async def item(item: int, limit: int = 1) -> dict[str, int]:
        return {"item": item, "limit": limit}

    reply = TestClient(scratch).get("/items/x")
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == "item"
    assert reply.json()["error"]["type"] == "invalid_request_error"
    assert TestClient(scratch).get("/items/1?limit=y").json()["error"]["param"] == "limit"


def test_protocol_response_follows_the_route() -> None:
    from deployments.errors import protocol_response, service_unavailable

    error = service_unavailable("busy \ud800", retry_after_s=3)
    kserve = protocol_response(error, "/v2/models/m/infer")
    assert kserve.status_code == 503 and kserve.headers["retry-after"] == "3"
    assert kserve.body == b'{"error":"busy \\\\ud800"}'
    assert protocol_response(error, "/v1/completions").body.startswith(b'{"error":{"message":"busy')
