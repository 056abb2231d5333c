"""The OpenAPI documentation of the vision routes: `/v1/vision/classify` and the KServe v2 / Triton routes.

Documentation-only models: those handlers parse their bodies by hand (deployments/vision_routes.py,
deployments/vision_kserve.py); these models give the same shapes to `/openapi.json`. Shared helpers
and the document itself are in `deployments.openapi_docs`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, RootModel

from deployments.openapi_docs import JSON, ok, openai_errors, response_doc, schema_ref


# ---- /v1/vision/classify ----


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")  # the handler refuses unknown fields

    model: str | None = Field(default=None, description="needed when several vision models are served")
    images: list[str] = Field(min_length=1, max_length=256, description="base64-encoded image files")
    top_k: int | None = Field(default=None, ge=1)


class ClassLabel(BaseModel):
    label: str
    class_index: int
    score: float


class Classification(BaseModel):
    index: int
    object: Literal["classification"]
    top_k: list[ClassLabel]


class ClassifyResponse(BaseModel):
    object: Literal["list"]
    model: str
    data: list[Classification]


CLASSIFY_DOCS: dict[str, Any] = {
    "parameters": [
        {"name": "model", "in": "query", "required": False, "schema": {"type": "string"},
         "description": "raw-image bodies: the vision model (optional with one)"},
        {"name": "top_k", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 1},
         "description": "raw-image bodies: how many classes to return"},
    ],
    "requestBody": {"required": True, "content": {
        JSON: {"schema": schema_ref(ClassifyRequest)},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    }},
}


CLASSIFY_RESPONSES = {**ok("Top-k classes of each image", ClassifyResponse),
                      **openai_errors(400, 401, 404, 413, 500, 503, 504)}


# ---- KServe v2 / Triton ----


class KServeError(BaseModel):
    """Every KServe v2 failure: the protocol's `{"error": "<message>"}`."""

    error: str


_KSERVE_ERROR_DESCRIPTIONS = {
    400: "Invalid inference request (the message names the field)",
    404: "Unknown model or version",
    503: "The model has no replica ready; retry after `Retry-After` seconds",
    504: "The model did not answer within the request timeout",
    "4XX": "Any other client error (a URL no route matches, a missing API key, a body over the limit)",
}


def kserve_errors(*statuses: int | str) -> dict[int | str, dict[str, Any]]:
    return {status: response_doc(_KSERVE_ERROR_DESCRIPTIONS[status], KServeError) for status in (*statuses, "4XX")}


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RepositoryIndexEntry(BaseModel):
    """One entry of Triton's repository index: a vision model's version and whether it is ready."""

    name: str
    version: str
    state: Literal["READY", "UNAVAILABLE"]
    reason: str | None = None


class RepositoryIndex(RootModel[list[RepositoryIndexEntry]]):
    pass


class ModelConfiguration(BaseModel):
    """Triton's model configuration (the `model_configuration` extension), as far as warmserve fills it."""

    model_config = ConfigDict(extra="allow")

    name: str
    platform: str
    max_batch_size: int


class InferInputTensor(BaseModel):
    name: str
    shape: list[int] = Field(max_length=8, description="non-negative dimensions")
    datatype: Literal["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16",
                      "FP32", "FP64"]
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data_size`: the tensor's bytes after the JSON header")
    data: list[Any] | None = Field(default=None, description="row-major values, flat or nested")


class InferRequestedOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = Field(
        default=None, description="`binary_data` (bool), `classification` (top-k as strings)")


class InferRequestBody(BaseModel):
    id: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="`binary_data_output` (bool)")
    inputs: list[InferInputTensor] = Field(min_length=1)
    outputs: list[InferRequestedOutput] | None = None


class InferOutputTensor(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponseBody(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutputTensor]


INFER_DOCS: dict[str, Any] = {
    "parameters": [
        {"name": "Inference-Header-Content-Length", "in": "header", "required": False,
         "schema": {"type": "integer", "minimum": 0},
         "description": "binary tensor extension: the JSON header's length; binary tensors follow it"},
    ],
    "requestBody": {"required": True, "content": {
        JSON: {"schema": schema_ref(InferRequestBody)},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                "description": "the JSON header, then the binary tensors"}},
    }},
}


_OCTET = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
INFER_RESPONSES = {
    200: response_doc("The outputs (binary tensors after a JSON header when asked for)", InferResponseBody,
                   extra_content=_OCTET),
    **kserve_errors(400, 404, 503, 504),
}
V2_SERVER_RESPONSES = ok("Server metadata", ServerMetadata)
V2_LIVE_RESPONSES = {200: {"description": "The server is live (empty body)"}}
V2_READY_RESPONSES = {200: {"description": "Every vision model is ready (empty body)"}, **kserve_errors(503)}
V2_MODEL_RESPONSES = {**ok("Model metadata", ModelMetadata), **kserve_errors(404)}
V2_MODEL_READY_RESPONSES = {200: {"description": "The model is ready (empty body)"}, **kserve_errors(404, 503)}
V2_MODEL_CONFIG_RESPONSES = {**ok("Model configuration", ModelConfiguration), **kserve_errors(404)}
V2_REPOSITORY_INDEX_RESPONSES = {**ok("Every vision model version and its state", RepositoryIndex), **kserve_errors(400)}
# Triton's optional body: `{"ready": true}` lists only ready models.
REPOSITORY_INDEX_BODY: dict[str, Any] = {"requestBody": {"required": False, "content": {JSON: {"schema": {
    "type": "object", "properties": {"ready": {"type": "boolean"}}, "additionalProperties": False}}}}}
