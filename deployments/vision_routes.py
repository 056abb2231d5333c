"""Vision routes on the one ingress app: the KServe v2 / Triton HTTP protocol and `/v1/vision/classify`.

`VisionRoutes` is a mixin of `deployments.ingress.Ingress`; Serve's class-based ingress binds inherited
route methods too (it matches routes against every class in the MRO). Errors on `/v2` use the KServe
body `{"error": "<message>"}` that `tritonclient` reads (it would show OpenAI's nested object as a dict);
`/v1/vision/classify` answers with OpenAI's error body, like every other `/v1` route.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Request
from fastapi.responses import JSONResponse, Response

from configs.model_versions import split_version
from configs.vision_schema import VisionModelConfig
from deployments.errors import APIError, bad_request, protocol_response
from deployments.http_app import app
from deployments.metrics import observe_vision_batches, record_vision_call
from deployments.model_resolver import SESSION_HEADER, VERSION_HEADER, ModelResolver, bare_name_cards
from deployments.openai_protocol import decode_json
from deployments.replica_failures import engine_failure_error
from deployments.version_fallback import answer_with_fallback
from deployments import openapi_vision_docs as docs
from deployments.vision_kserve import (
    HEADER_LENGTH,
    InferRequest,
    KServeError,
    OutputTensor,
    RequestedOutput,
    classification_strings,
    encode_infer_response,
    parse_infer_request,
)
from engines.vision.postprocess import softmax
from engines.vision.store import INPUT_NAME, OUTPUT_NAME

logger = logging.getLogger("warmserve.ingress")
MODEL_VERSION = "1"
SERVER_EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration"]
# Images one infer request may carry: each becomes a batch item, and 1024 x 224^2 x 3 FP32 is 600 MB.
MAX_IMAGES_PER_REQUEST = 1024


@dataclass(slots=True)
class ServedVisionModel:
    config: VisionModelConfig
    handle: Any  # DeploymentHandle of the model's VisionReplica deployment
    labels: list[str]
    created: int


def _kserve_error(status: int, message: str, retry_after_s: int | None = None) -> JSONResponse:
    return protocol_response(APIError(status, message, retry_after_s=retry_after_s), "/v2")


class VisionRoutes:
    """Route methods and state for the vision models; `Ingress.__init__` calls `_init_vision`."""

    _vision: dict[str, ServedVisionModel]
    _vision_timeout_s: float

    def _init_vision(self, models: list[VisionModelConfig], handles: dict[str, Any], labels: dict[str, list[str]],
                     timeout_s: float) -> None:
        created = int(time.time())
        self._vision = {m.name: ServedVisionModel(m, handles[m.name], labels[m.name], created) for m in models}
        self._vision_resolver = ModelResolver(self._vision)  # versions: `Ingress.reconfigure` sets weights
        self._vision_timeout_s = timeout_s

    def vision_model_cards(self) -> list[dict[str, Any]]:
        """Entries for `/v1/models`."""
        def card(name: str) -> dict[str, Any]:
            served = self._vision[name]
            return {"id": name, "object": "model", "created": served.created, "owned_by": "warmserve",
                    "task": "image-classification", "architecture": served.config.model}

        cards = [card(name) for name in self._vision] + bare_name_cards(self._vision_resolver, card)
        return sorted(cards, key=lambda c: c["id"])

    async def _call(self, served: ServedVisionModel, method: str, *args: Any) -> Any:
        """One call of `served`'s replica with the ingress timeout, counted for its version; failures become
        APIErrors (503 replica unavailable, 504 timeout, 500 the engine failed)."""
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._vision_timeout_s):
                reply = await getattr(served.handle, method).remote(*args)
        except TimeoutError:
            record_vision_call(served.config.name, None)
            raise APIError(504, f"no answer from the vision replica within {self._vision_timeout_s:.0f} s",
                           type="timeout") from None
        except Exception as error:
            record_vision_call(served.config.name, None)
            # 503 when the replica is gone or at capacity, else 500 naming the engine's error.
            raise engine_failure_error(error, retry_after_s=2) from None
        record_vision_call(served.config.name, time.monotonic() - started)
        return reply

    async def _replica_answers(self, served: ServedVisionModel) -> str | None:
        try:
            await asyncio.wait_for(served.handle.stats.remote(), timeout=5)
        except Exception as error:  # not ready, whatever the cause; reported, not raised
            return f"{served.config.name}: {type(error).__name__}"
        return None

    # ---- KServe v2 / Triton: server ----

    @app.get("/v2", response_model=None, responses=docs.V2_SERVER_RESPONSES)
    async def v2_server_metadata(self) -> dict[str, Any]:
        return {"name": "warmserve", "version": "1", "extensions": SERVER_EXTENSIONS}

    @app.get("/v2/health/live", response_class=Response, responses=docs.V2_LIVE_RESPONSES)
    async def v2_live(self) -> Response:
        return Response(status_code=200)

    @app.get("/v2/health/ready", response_class=Response, responses=docs.V2_READY_RESPONSES)
    async def v2_ready(self) -> Response:
        problems = [p for p in await asyncio.gather(*(self._replica_answers(s) for s in self._vision.values())) if p]
        if problems:
            return _kserve_error(503, f"models not ready: {'; '.join(problems)}", retry_after_s=5)
        return Response(status_code=200)

    # ---- KServe v2 / Triton: models ----

    def _served_vision(self, name: str, version: str | None) -> ServedVisionModel | JSONResponse:
        """The model (or version) a KServe path names: `{name}` a model, a version (`resnet@fp16`) or a
        versioned model's bare name (split by weight); `/versions/{version}` pins one ("1" is every
        unversioned model's only version)."""
        names = self._vision_resolver.names()
        if name not in names:
            return _kserve_error(404, f"Request for unknown model: '{name}' is not found; vision models: "
                                      f"{', '.join(names) or 'none'}")
        pinned = None if version in (None, "", MODEL_VERSION) else version
        try:
            return self._vision_resolver.resolve(name, pinned)[1]
        except APIError:
            return _kserve_error(404, f"Request for unknown model: '{name}' version {version} is not found; "
                                      f"available versions: {', '.join(self._vision_versions(name))}")

    def _vision_versions(self, name: str) -> list[str]:
        """The KServe versions of a name: a split's versions, a version's own, or "1"."""
        split = self._vision_resolver.splits().get(name)
        served = split.versions if split is not None else [name]
        return [version_label(s) for s in served]

    def _metadata(self, served: ServedVisionModel, name: str | None = None) -> dict[str, Any]:
        """Metadata of `served`, or of the versioned model `name` it is a version of (listing them all)."""
        c = served.config
        return {"name": name or c.name, "versions": self._vision_versions(name or c.name),
                "platform": f"warmserve_{c.engine.backend}",
                "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, 3, c.image_size, c.image_size]}],
                "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32", "shape": [-1, c.num_classes]}]}

    @app.get("/v2/models/{name}", responses=docs.V2_MODEL_RESPONSES)
    async def v2_model_metadata(self, name: str) -> Response:
        served = self._served_vision(name, None)
        return served if isinstance(served, JSONResponse) else JSONResponse(self._metadata(served, name))

    @app.get("/v2/models/{name}/versions/{version}", responses=docs.V2_MODEL_RESPONSES)
    async def v2_model_version_metadata(self, name: str, version: str) -> Response:
        served = self._served_vision(name, version)
        return served if isinstance(served, JSONResponse) else JSONResponse(self._metadata(served))

    async def _model_ready(self, name: str, version: str | None) -> Response:
        served = self._served_vision(name, version)
        if isinstance(served, JSONResponse):
            return served
        problem = await self._replica_answers(served)
        return _kserve_error(503, f"model not ready: {problem}", 5) if problem else Response(status_code=200)

    @app.get("/v2/models/{name}/ready", response_class=Response, responses=docs.V2_MODEL_READY_RESPONSES)
    async def v2_model_ready(self, name: str) -> Response:
        return await self._model_ready(name, None)

    @app.get("/v2/models/{name}/versions/{version}/ready", response_class=Response,
             responses=docs.V2_MODEL_READY_RESPONSES)
    async def v2_model_version_ready(self, name: str, version: str) -> Response:
        return await self._model_ready(name, version)

    def _model_config(self, served: ServedVisionModel) -> dict[str, Any]:
        c = served.config
        return {"name": c.name, "platform": f"warmserve_{c.engine.backend}", "max_batch_size": c.batching.max_batch_size,
                "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32", "dims": [3, c.image_size, c.image_size]}],
                "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32", "dims": [c.num_classes]}],
                "dynamic_batching": {"max_queue_delay_microseconds": int(c.batching.batch_wait_timeout_s * 1e6)},
                "instance_group": [{"count": c.num_replicas, "kind": "KIND_GPU" if c.num_gpus else "KIND_CPU"}]}

    @app.get("/v2/models/{name}/config", responses=docs.V2_MODEL_CONFIG_RESPONSES)
    async def v2_model_config(self, name: str) -> Response:
        served = self._served_vision(name, None)
        return served if isinstance(served, JSONResponse) else JSONResponse(self._model_config(served))

    @app.get("/v2/models/{name}/versions/{version}/config", responses=docs.V2_MODEL_CONFIG_RESPONSES)
    async def v2_model_version_config(self, name: str, version: str) -> Response:
        served = self._served_vision(name, version)
        return served if isinstance(served, JSONResponse) else JSONResponse(self._model_config(served))

    @app.post("/v2/models/{name}/infer", openapi_extra=docs.INFER_DOCS, responses=docs.INFER_RESPONSES)
    async def v2_infer(self, name: str, request: Request) -> Response:
        return await self._infer(name, None, request)

    @app.post("/v2/models/{name}/versions/{version}/infer", openapi_extra=docs.INFER_DOCS,
              responses=docs.INFER_RESPONSES)
    async def v2_version_infer(self, name: str, version: str, request: Request) -> Response:
        return await self._infer(name, version, request)

    async def _infer(self, name: str, version: str | None, request: Request) -> Response:
        checked = self._served_vision(name, version)
        if isinstance(checked, JSONResponse):
            return checked
        raw = await request.body()

        async def answer(served: ServedVisionModel) -> Response:
            try:
                parsed = parse_infer_request(raw, request.headers.get(HEADER_LENGTH))
                images = _model_input(parsed, served.config)
                outputs = _requested_outputs(parsed, served.config)
            except KServeError as error:
                return _kserve_error(400, str(error))
            reply = await self._call(served, "infer_tensor", images)
            observe_vision_batches(served.config.name, reply.backend, reply.batch_sizes)
            logits = reply.logits
            tensors: list[tuple[OutputTensor, bool]] = []
            for wanted in outputs:
                binary = parsed.binary_output if wanted.binary is None else wanted.binary
                if wanted.class_count:
                    strings = classification_strings(softmax(logits.astype(np.float64)), served.labels,
                                                     wanted.class_count)
                    tensors.append((OutputTensor(wanted.name, "BYTES", strings), binary))
                else:
                    tensors.append((OutputTensor(wanted.name, "FP32", logits.astype(np.float32)), binary))
            answered = version_label(served.config.name)
            body, headers = encode_infer_response(split_version(name)[0], answered, parsed.id, tensors)
            return Response(body, headers={**headers, VERSION_HEADER: answered})

        pinned = None if version in (None, "", MODEL_VERSION) else version
        try:
            return await answer_with_fallback(self._vision_resolver, name, pinned,
                                              request.headers.get(SESSION_HEADER), answer)
        except APIError as error:
            return _kserve_error(error.status_code, error.message, error.retry_after_s)

    # ---- convenience: image bytes in, top-k labels out ----

    @app.post("/v1/vision/classify", openapi_extra=docs.CLASSIFY_DOCS, responses=docs.CLASSIFY_RESPONSES)
    async def vision_classify(self, request: Request) -> Response:
        """Body: the raw image bytes (`?model=NAME&top_k=K`, both optional with one vision model), or JSON
        `{"model", "images": [base64, ...], "top_k"}`. Answers the top-k classes of each image."""
        raw = await request.body()
        if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
            model_name, images, k = _classify_json(raw)
        else:
            model_name, images, k = request.query_params.get("model"), [raw], request.query_params.get("top_k")
        name = self._vision_name(model_name)

        async def answer(served: ServedVisionModel) -> Response:
            top = _top_k_value(k, served.config)
            limit = served.config.max_image_bytes
            for index, data in enumerate(images):
                if len(data) > limit:
                    raise bad_request(f"image {index} is {len(data)} bytes; the limit is {limit}", param="images",
                                      code="image_too_large")
            reply = await self._call(served, "classify", images, top)
            observe_vision_batches(served.config.name, reply.backend, reply.batch_sizes)
            if reply.error is not None:
                where = f"image {reply.error_index}: " if len(images) > 1 else ""
                raise bad_request(f"{where}{reply.error}", param="images" if len(images) > 1 else "body",
                                  code="invalid_image")
            return JSONResponse({
                "object": "list", "model": served.config.name,
                "data": [{"index": i, "object": "classification",
                          "top_k": [{"label": c.label, "class_index": c.index, "score": c.score} for c in row]}
                         for i, row in enumerate(reply.results)]},
                headers={VERSION_HEADER: version_label(served.config.name),
                         **({"x-warmserve-replica": reply.replica_id} if reply.replica_id else {})})

        headers = request.headers
        return await answer_with_fallback(self._vision_resolver, name, headers.get(VERSION_HEADER),
                                          headers.get(SESSION_HEADER), answer)

    def _vision_name(self, name: str | None) -> str:
        """The model a classify request names; with none named, the one vision model served (a versioned
        one's bare name, so its split applies)."""
        if name is not None:
            return name
        models = sorted({split_version(n)[0] for n in self._vision})
        if not models:
            raise APIError(404, "no vision models are served", param="model", code="model_not_found")
        if len(models) > 1:
            raise bad_request(f"several vision models are served; name one with 'model' "
                              f"({', '.join(sorted(self._vision))})", param="model")
        return models[0] if models[0] in self._vision_resolver.names() else next(iter(self._vision))

    # ---- KServe v2 / Triton: model repository ----

    @app.post("/v2/repository/index", openapi_extra=docs.REPOSITORY_INDEX_BODY,
              responses=docs.V2_REPOSITORY_INDEX_RESPONSES)
    async def v2_repository_index(self, request: Request) -> Response:
        """Triton's repository index: every vision model and version, READY when its replica answers
        (only those with the optional body `{"ready": true}`)."""
        raw = await request.body()
        body = decode_json(raw) if raw.strip() else {}
        if not isinstance(body, dict) or not isinstance(body.get("ready", False), bool) or set(body) - {"ready"}:
            return _kserve_error(400, 'the body, when given, must be {"ready": true|false}')
        served = sorted(self._vision.values(), key=lambda s: s.config.name)
        problems = await asyncio.gather(*(self._replica_answers(s) for s in served))
        return JSONResponse([
            {"name": split_version(s.config.name)[0], "version": version_label(s.config.name),
             "state": "UNAVAILABLE" if problem else "READY", **({"reason": problem} if problem else {})}
            for s, problem in zip(served, problems, strict=True) if not (body.get("ready") and problem)])


def version_label(served_name: str) -> str:
    """A served name's KServe version: `fp16` for `resnet@fp16`, "1" for an unversioned model."""
    return split_version(served_name)[1] or MODEL_VERSION


def _model_input(parsed: InferRequest, config: VisionModelConfig) -> np.ndarray:
    """The one FP32 [N, 3, S, S] input the classifier takes, or a KServeError naming what is wrong."""
    size = config.image_size
    expected = f"[-1, 3, {size}, {size}]"
    if len(parsed.inputs) != 1 or parsed.inputs[0].name != INPUT_NAME:
        got = [i.name for i in parsed.inputs]
        raise KServeError(f"model '{config.name}' takes exactly one input '{INPUT_NAME}' (FP32 {expected}), got {got}")
    tensor = parsed.inputs[0]
    if tensor.datatype != "FP32":
        raise KServeError(f"input '{INPUT_NAME}': datatype {tensor.datatype}, but model '{config.name}' expects FP32")
    shape = tensor.shape
    if len(shape) != 4 or shape[1:] != [3, size, size] or shape[0] < 1:
        raise KServeError(f"input '{INPUT_NAME}': shape {shape}, but model '{config.name}' expects {expected} "
                          "with a batch of at least 1")
    if shape[0] > MAX_IMAGES_PER_REQUEST:
        raise KServeError(f"input '{INPUT_NAME}': batch of {shape[0]} images; at most {MAX_IMAGES_PER_REQUEST} "
                          "per request")
    if not np.isfinite(tensor.array).all():
        raise KServeError(f"input '{INPUT_NAME}': contains NaN or infinite values")
    return np.ascontiguousarray(tensor.array, dtype=np.float32)


def _requested_outputs(parsed: InferRequest, config: VisionModelConfig) -> list[RequestedOutput]:
    if not parsed.outputs:
        return [RequestedOutput(OUTPUT_NAME)]
    for wanted in parsed.outputs:
        if wanted.name != OUTPUT_NAME:
            raise KServeError(f"unknown output '{wanted.name}'; model '{config.name}' has output '{OUTPUT_NAME}'")
        if wanted.class_count > config.num_classes:
            raise KServeError(f"output '{OUTPUT_NAME}': classification {wanted.class_count} exceeds the model's "
                              f"{config.num_classes} classes")
    return parsed.outputs


def _classify_json(raw: bytes) -> tuple[str | None, list[bytes], object]:
    body = decode_json(raw)
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object with 'images'")
    unknown = sorted(set(body) - {"model", "images", "top_k"})
    if unknown:
        raise bad_request(f"unknown fields {unknown}; allowed: model, images, top_k", param=unknown[0])
    model, images = body.get("model"), body.get("images")
    if model is not None and not isinstance(model, str):
        raise bad_request("'model' must be a string", param="model")
    if not isinstance(images, list) or not images or not all(isinstance(i, str) for i in images):
        raise bad_request("'images' must be a non-empty list of base64-encoded images", param="images")
    if len(images) > 256:
        raise bad_request(f"'images' has {len(images)} entries; at most 256 per request", param="images")
    decoded = []
    for index, text in enumerate(images):
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise bad_request(f"images[{index}] is not valid base64", param=f"images[{index}]") from None
    return model, decoded, body.get("top_k")


def _top_k_value(value: object, config: VisionModelConfig) -> int:
    if value is None:
        return config.top_k_default
    try:
        k = int(value) if isinstance(value, (int, str)) and not isinstance(value, bool) else None
    except ValueError:
        k = None
    if k is None or not 1 <= k <= config.num_classes:
        raise bad_request(f"top_k must be an integer in [1, {config.num_classes}], got {value!r}", param="top_k")
    return k
