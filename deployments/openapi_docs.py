"""The OpenAPI document (`/openapi.json`) of routes that parse their own bodies.

The OpenAI and KServe handlers take the raw `Request` and validate it themselves, so that every failure is
the API's error body rather than FastAPI's 422. FastAPI therefore cannot see their bodies; the route
decorators describe them instead (`openapi_extra=docs.COMPLETION_BODY`, `responses=docs.COMPLETION_RESPONSES`)
with the JSON schema of the very pydantic models the handlers validate with (requests) or whose shape they
return (responses, typed below). `install_openapi(app)` moves the models' schemas into
`components/schemas`, so every `$ref` in the document resolves.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from deployments.openai_protocol import ChatCompletionRequest, CompletionRequest

REF_PREFIX = "#/components/schemas/"
_REF_TEMPLATE = REF_PREFIX + "{model}"
JSON = "application/json"
SSE = "text/event-stream"

# Schemas named by the decorators so far (they run at import), merged into the document when it is built.
_components: dict[str, dict[str, Any]] = {}


class SchemaConflictError(RuntimeError):
    """Two different models would share one name in `components/schemas`."""


def schema_ref(model: type[BaseModel], mode: JsonSchemaMode = "validation") -> dict[str, str]:
    """`{"$ref": "#/components/schemas/<Model>"}`, with the model and every model it uses registered."""
    refs, top = models_json_schema([(model, mode)], ref_template=_REF_TEMPLATE)
    schemas = top.get("$defs", {})
    clashes = sorted(name for name, schema in schemas.items() if _components.get(name, schema) != schema)
    if clashes:
        raise SchemaConflictError(f"two different schemas would be named {clashes} in the OpenAPI document")
    _components.update(schemas)
    return refs[(model, mode)]


def json_body(model: type[BaseModel], *, description: str | None = None) -> dict[str, Any]:
    """`openapi_extra` for a route whose handler validates a JSON body with `model` itself."""
    body: dict[str, Any] = {"required": True, "content": {JSON: {"schema": schema_ref(model)}}}
    if description:
        body["description"] = description
    return {"requestBody": body}


def response_doc(description: str, model: type[BaseModel] | None = None, *, media_type: str = JSON,
              extra_content: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if model is not None:
        response["content"] = {media_type: {"schema": schema_ref(model, "serialization")}, **(extra_content or {})}
    return response


# ---- OpenAI: errors ----


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every OpenAI-route failure (`deployments.errors.APIError.body`)."""

    error: ErrorDetail


_ERROR_DESCRIPTIONS = {
    400: "Invalid request: the body, a field (named in `error.param`) or the prompt's length",
    401: "Missing or invalid API key",
    404: "Unknown model (`code: model_not_found`) or URL",
    405: "Method not allowed on this URL",
    413: "The request body is over the server's limit (`security.max_body_bytes`)",
    429: "Over this client's or API key's limit; retry after `Retry-After` seconds",
    500: "Internal error",
    503: "No capacity or no replica; retry after `Retry-After` seconds",
    504: "The model did not answer within the request timeout",
}


def openai_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: response_doc(_ERROR_DESCRIPTIONS[status], ErrorResponse) for status in statuses}


# The statuses a completion can fail with (validation, API key, model lookup, body size, admission and key
# limits, replicas, timeouts).
COMPLETION_ERRORS = (400, 401, 404, 413, 429, 500, 503, 504)


# ---- OpenAI: responses ----


class PromptTokensDetails(BaseModel):
    cached_tokens: int


class CompletionUsage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails


class FailoverReport(BaseModel):
    retried: int
    resumed: int
    failed_replicas: list[str]


class WarmserveExtension(BaseModel):
    """Present when the answer survived a replica failure (retried before, or resumed after, a token)."""

    failover: FailoverReport


FinishReason = Literal["stop", "length", "abort"]


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: str


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    finish_reason: FinishReason | None
    logprobs: None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    warmserve: WarmserveExtension | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage
    warmserve: WarmserveExtension | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None  # in each choice's first chunk
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int
    delta: ChatDelta
    finish_reason: FinishReason | None
    logprobs: None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChatChunkChoice] = Field(description="empty in the usage chunk")
    usage: CompletionUsage | None = Field(
        default=None, description="with `stream_options.include_usage`: null, then set in the last chunk")
    warmserve: WarmserveExtension | None = None


class CompletionChunk(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[CompletionChoice] = Field(description="empty in the usage chunk")
    usage: CompletionUsage | None = Field(
        default=None, description="with `stream_options.include_usage`: null, then set in the last chunk")
    warmserve: WarmserveExtension | None = None


def _event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """`"stream": true`: server-sent events, `data: <chunk JSON>` each (an error body if the stream fails after
    its first token), then `data: [DONE]`. In OpenAPI 3.1 the `schema` of an event stream is one event's."""
    as_json = {"contentMediaType": JSON, "contentSchema": {
        "anyOf": [schema_ref(chunk, "serialization"), schema_ref(ErrorResponse, "serialization")]}}
    data = {"type": "string", "anyOf": [as_json, {"const": "[DONE]"}],
            "description": "a chunk as JSON, an error body if the stream fails, or `[DONE]` (the last event)"}
    return {SSE: {"schema": {"type": "object", "required": ["data"], "properties": {"data": data}}}}


def completion_responses(model: type[BaseModel], chunk: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    ok = response_doc("The completion; with `stream: true`, server-sent events of chunks", model,
                   extra_content=_event_stream(chunk))
    return {200: ok, **openai_errors(*COMPLETION_ERRORS)}


CHAT_COMPLETION_BODY = json_body(ChatCompletionRequest, description="OpenAI chat completion request")
COMPLETION_BODY = json_body(CompletionRequest, description="OpenAI (legacy) text completion request")
CHAT_COMPLETION_RESPONSES = completion_responses(ChatCompletionResponse, ChatCompletionChunk)
COMPLETION_RESPONSES = completion_responses(CompletionResponse, CompletionChunk)


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    max_model_len: int | None = Field(default=None, description="LLMs: the context window in tokens")
    task: str | None = Field(default=None, description="vision models: `image-classification`")
    architecture: str | None = Field(default=None, description="vision models: the network")


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class HealthResponse(BaseModel):
    status: Literal["ok"]


class ReadyResponse(BaseModel):
    status: Literal["ready"]
    models: list[str]


def ok(description: str, model: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    return {200: response_doc(description, model)}


HEALTH_RESPONSES = ok("The ingress is up", HealthResponse)
READY_RESPONSES = {**ok("Every model has a running replica", ReadyResponse), **openai_errors(503)}
MODELS_RESPONSES = {**ok("The served models, LLMs and vision models", ModelList), **openai_errors(401)}


def install_openapi(app: FastAPI) -> None:
    """Serve a document whose `components/schemas` hold the models the decorators named."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()  # FastAPI's, cached on the app; completed here once
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in _components.items():
                if schemas.setdefault(name, schema) != schema:
                    raise SchemaConflictError(f"FastAPI and a route decorator both define schema {name!r}")
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
