"""The HTTP ingress: OpenAI-compatible routes in a FastAPI app served by Ray Serve.

It validates, applies the chat template and tokenizes once, then streams from an LLM replica through a
DeploymentHandle. Every failure leaves as an OpenAI error body with a 4xx/5xx status, never a hang.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.schema import HttpConfig, LLMModelConfig
from deployments.completion_stream import IndexedChunk, Usage, merged_streams
from deployments.handle_calls import call_with_own_request_id
from deployments.http_app import app
from deployments.errors import APIError, bad_request, internal_error, model_not_found, service_unavailable
from deployments.openai_framing import CHAT, COMPLETION, Framing
from deployments.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    check_sampling_limits,
    parse_request,
)
from deployments.sse import SSE_DONE, SSE_MEDIA_TYPE, sse_event
from engines.tokenizer import ChatTemplateError, PromptTokenizer
from engines.types import GenerationRequest, OutputChunk, SamplingSpec

logger = logging.getLogger("warmserve.ingress")


@dataclass(slots=True)
class ServedModel:
    config: LLMModelConfig
    tokenizer: PromptTokenizer
    handle: DeploymentHandle
    created: int


def resolve_max_tokens(requested: int | None, prompt_tokens: int, max_model_len: int, default: int,
                       prompt_param: str) -> int:
    """Fit the completion into the context window, or explain with a 400 why it cannot."""
    if prompt_tokens >= max_model_len:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, your {prompt_param} "
            f"resulted in {prompt_tokens} tokens.", param=prompt_param, code="context_length_exceeded")
    room = max_model_len - prompt_tokens
    if requested is None:
        return min(default, room)
    if requested > room:
        raise bad_request(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + requested} tokens ({prompt_tokens} in the {prompt_param}, {requested} in the "
            "completion). Please reduce the length of the prompt or max_tokens.",
            param="max_tokens", code="context_length_exceeded")
    return requested


async def _read_json(request: Request) -> object:
    raw = await request.body()
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise bad_request(f"request body is not valid JSON: {error}") from None


def _is_replica_failure(error: BaseException) -> bool:
    import grpc
    from ray.exceptions import RayActorError, RayTaskError

    # Serve maps a replica that is gone to RayActorError on both transports; other gRPC statuses (handle
    # calls travel over gRPC in throughput-optimized mode) are transport failures too, never a bad request.
    return isinstance(error, (RayActorError, RayTaskError, ConnectionError, grpc.aio.AioRpcError))


@serve.deployment(name="ingress")
@serve.ingress(app)
class Ingress:
    def __init__(self, models: list[LLMModelConfig], model_paths: dict[str, str],
                 handles: dict[str, DeploymentHandle], http: HttpConfig) -> None:
        created = int(time.time())
        self._models = {
            m.name: ServedModel(m, PromptTokenizer(Path(model_paths[m.name])), handles[m.name], created)
            for m in models
        }
        self._timeout_s = http.request_timeout_s

    def _model(self, name: str) -> ServedModel:
        served = self._models.get(name)
        if served is None:
            raise model_not_found(name, sorted(self._models))
        return served

    @app.get("/health")
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(self) -> Response:
        """200 once every model has a replica answering `stats`; 503 (with what is missing) otherwise."""
        missing = []
        for name, served in self._models.items():
            try:
                await asyncio.wait_for(served.handle.stats.remote(), timeout=5)
            except Exception as error:  # any failure means "not ready", reported, not raised
                missing.append(f"{name}: {type(error).__name__}")
        if missing:
            return service_unavailable(f"models not ready: {'; '.join(missing)}", retry_after_s=5).response()
        return JSONResponse({"status": "ready", "models": sorted(self._models)})

    @app.get("/v1/models")
    async def list_models(self) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": s.created, "owned_by": "warmserve",
             "max_model_len": s.config.engine.max_model_len}
            for name, s in sorted(self._models.items())]}

    @app.post("/v1/chat/completions")
    async def chat_completions(self, request: Request) -> Response:
        body = parse_request(ChatCompletionRequest, await _read_json(request))
        served = self._model(body.model)
        try:
            prompt = served.tokenizer.encode_chat([{"role": m.role, "content": m.text()} for m in body.messages])
        except ChatTemplateError as error:
            raise bad_request(str(error), param="messages") from None
        return await self._complete(served, body, prompt, body.effective_max_tokens(), "messages", CHAT)

    @app.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        body = parse_request(CompletionRequest, await _read_json(request))
        served = self._model(body.model)
        if isinstance(body.prompt, str):
            prompt = served.tokenizer.encode(body.prompt)
        else:
            vocab = served.tokenizer.vocab_size
            bad = next((t for t in body.prompt if not 0 <= t < vocab), None)
            if bad is not None:
                raise bad_request(f"Invalid value for 'prompt': token id {bad} is outside the vocabulary "
                                  f"[0, {vocab})", param="prompt", code="invalid_value")
            prompt = list(body.prompt)
        if not prompt:
            raise bad_request("Invalid value for 'prompt': it encodes to zero tokens", param="prompt")
        return await self._complete(served, body, prompt, body.effective_max_tokens(), "prompt", COMPLETION)

    async def _complete(self, served: ServedModel, body: ChatCompletionRequest | CompletionRequest,
                        prompt: list[int], requested_max_tokens: int | None, prompt_param: str,
                        framing: Framing) -> Response:
        limits = served.config.limits
        check_sampling_limits(body, limits.max_n, limits.max_stop_sequences, limits.max_stop_length_chars)
        max_tokens = resolve_max_tokens(requested_max_tokens, len(prompt), served.config.engine.max_model_len,
                                        limits.max_tokens_default, prompt_param)
        request_id = framing.id_prefix + uuid.uuid4().hex
        requests = [
            GenerationRequest(
                request_id=f"{request_id}-{i}",
                prompt_token_ids=prompt,
                sampling=SamplingSpec(max_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                                      seed=None if body.seed is None else body.seed + i, stop=body.stop_list(),
                                      ignore_eos=body.ignore_eos),
            )
            for i in range(body.n)
        ]
        usage = Usage()
        stream = merged_streams(requests, self._starter(served), usage)
        # Wait for the first chunk before answering, so a failure before any token is a proper error
        # status rather than a 200 followed by a broken stream.
        first = await self._first_chunk(stream)
        created = int(time.time())
        headers = {"x-request-id": request_id}
        if first.chunk.replica_id:  # which replica the router chose (choice 0 when n > 1)
            headers["x-warmserve-replica"] = first.chunk.replica_id
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = self._sse(framing, request_id, created, body.model, body.n, first, stream, usage,
                               include_usage)
            return StreamingResponse(events, media_type=SSE_MEDIA_TYPE, headers=headers)
        texts, finishes = [""] * body.n, [None] * body.n
        try:
            async with asyncio.timeout(self._timeout_s):
                item: IndexedChunk | None = first
                while item is not None:
                    texts[item.index] += item.chunk.text
                    finishes[item.index] = item.chunk.finish_reason or finishes[item.index]
                    item = await anext(stream, None)
        except TimeoutError:
            raise APIError(504, f"request timed out after {self._timeout_s:.0f} s", type="timeout") from None
        except APIError:
            raise
        except Exception as error:
            raise self._engine_error(error) from None
        finally:
            await stream.aclose()
        return JSONResponse(framing.full(request_id, created, body.model, texts, finishes, usage), headers=headers)

    def _starter(self, served: ServedModel):
        handle = served.handle.options(stream=True)

        async def start(request: GenerationRequest) -> AsyncIterator[OutputChunk]:
            response = call_with_own_request_id(handle.generate, request)
            finished = False
            try:
                async for chunk in response:
                    yield chunk
                finished = True
            finally:
                if not finished:  # client gone or error: stop the replica's generator (aborts in-engine)
                    response.cancel()

        return start

    async def _first_chunk(self, stream: AsyncIterator[IndexedChunk]) -> IndexedChunk:
        try:
            async with asyncio.timeout(self._timeout_s):
                first = await anext(stream, None)
        except TimeoutError:
            await stream.aclose()
            raise APIError(504, f"no response from the model within {self._timeout_s:.0f} s",
                           type="timeout") from None
        except Exception as error:
            await stream.aclose()
            raise self._engine_error(error) from None
        if first is None:
            raise internal_error("the engine finished without producing output")
        return first

    @staticmethod
    def _engine_error(error: BaseException) -> APIError:
        if _is_replica_failure(error):
            logger.warning("replica failure: %s", error)
            return service_unavailable(f"model replica unavailable: {type(error).__name__}", retry_after_s=2)
        logger.exception("engine error", exc_info=error)
        return internal_error(f"engine error: {type(error).__name__}")

    async def _sse(self, framing: Framing, request_id: str, created: int, model: str, n: int,
                   first: IndexedChunk, stream: AsyncIterator[IndexedChunk], usage: Usage,
                   include_usage: bool) -> AsyncIterator[bytes]:
        if framing.is_chat:  # OpenAI opens every chat choice with a role-only delta
            for index in range(n):
                yield sse_event(framing.chunk(request_id, created, model, index, None, None, include_usage,
                                              first=True))
        try:
            item: IndexedChunk | None = first
            while item is not None:
                chunk = item.chunk
                if chunk.text or chunk.finish_reason:
                    yield sse_event(framing.chunk(request_id, created, model, item.index, chunk.text,
                                                  chunk.finish_reason, include_usage))
                item = await anext(stream, None)
        except Exception as error:
            # Headers are gone already: report in-band, as OpenAI does, then end the stream cleanly.
            yield sse_event(self._engine_error(error).body())
        finally:
            await stream.aclose()
        if include_usage:
            yield sse_event(framing.usage_chunk(request_id, created, model, usage))
        yield SSE_DONE
