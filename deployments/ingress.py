"""The HTTP ingress: OpenAI-compatible routes in a FastAPI app served by Ray Serve.

It validates, applies the chat template and tokenizes once, then streams from an LLM replica through a
DeploymentHandle. Every failure leaves as an OpenAI error body with a 4xx/5xx status, never a hang.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode
from ray import serve
from ray.serve.handle import DeploymentHandle

from configs.model_versions import split_version
from configs.observability_schema import ObservabilityConfig
from configs.schema import HttpConfig, LLMModelConfig
from configs.security_schema import SecurityConfig
from configs.vision_schema import VisionModelConfig
from deployments.admission import AdmissionTicket, client_identity
from deployments.arrival_gate import ArrivalGate, settle_arrival
from deployments.api_keys import ResolvedKey
from deployments.completion_stream import IndexedChunk, Usage, merged_streams
from deployments.errors import APIError, internal_error, service_unavailable
from deployments.handle_calls import call_with_own_request_id
from deployments import openapi_docs as docs
from deployments.http_app import app
from deployments.metrics import observed_generation, watch_admission
from deployments.model_resolver import SESSION_HEADER, VERSION_HEADER, ModelResolver, bare_name_cards
from deployments.metrics_routes import MetricsRoutes
from deployments.openai_framing import CHAT, COMPLETION, Framing
from deployments.openai_protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    check_sampling_limits,
    resolve_max_tokens,
)
from deployments.prompt_encoding import chat_prompt_ids, completion_prompt_ids
from deployments.readiness import ReadinessWatch, Watched
from deployments.replica_failures import engine_failure_error
from deployments.request_bounds import check_token_bounds
from deployments.request_logging import bind_request, configure_logging
from deployments.resumable_generation import FailoverEvents, resumable_generation
from deployments.served_model import ServedModel
from deployments.security_middleware import api_key_name, key_limiter, process_security
from deployments.sse import SSE_DONE, SSE_MEDIA_TYPE, sse_event
from deployments.request_span import parse_traced, record_usage, traced_request
from deployments.tracing import configure_tracing, end_span
from deployments.version_fallback import answer_with_fallback
from deployments.vision_routes import VisionRoutes
from engines.process_priority import set_own_niceness
from engines.trace_context import carrier_of, trace_id_of, tracer
from engines.types import GenerationRequest, OutputChunk, SamplingSpec

logger = logging.getLogger("warmserve.ingress")


@dataclass(slots=True)
class _Reply:
    """One API request's response state, shared by the streaming and the full-body paths."""

    framing: Framing
    request_id: str
    created: int
    model: str
    n: int
    usage: Usage
    failover: FailoverEvents
    ticket: AdmissionTicket
    retry_after_s: int
    span: Span  # the request's server span; a stream ends it when the stream ends


@serve.deployment(name="ingress")
@serve.ingress(app)
class Ingress(VisionRoutes, MetricsRoutes):  # the /v2 (KServe/Triton) and /v1/vision routes; /metrics
    def __init__(self, models: list[LLMModelConfig], model_paths: dict[str, str],
                 handles: dict[str, DeploymentHandle], http: HttpConfig,
                 vision_models: list[VisionModelConfig] | None = None,
                 vision_handles: dict[str, DeploymentHandle] | None = None,
                 vision_labels: dict[str, list[str]] | None = None,
                 security: SecurityConfig | None = None, api_keys: list[ResolvedKey] | None = None,
                 observability: ObservabilityConfig | None = None) -> None:
        if http.ingress_niceness is not None:  # first: the threads started below inherit it
            set_own_niceness(http.ingress_niceness, "the ingress")
        observability = observability or ObservabilityConfig()
        configure_tracing(observability.tracing, "ingress")
        configure_logging(observability.logging, "ingress")
        self._log_prompts = observability.logging.log_prompts
        security = security or SecurityConfig()
        process_security().configure(api_keys or [], security.max_body_bytes, security.metrics_require_key,
                                     security.max_body_bytes_in_flight)
        self._init_vision(vision_models or [], vision_handles or {}, vision_labels or {}, http.request_timeout_s)
        created = int(time.time())
        self._models = {
            m.name: ServedModel.create(m, model_paths[m.name], handles[m.name], created) for m in models
        }
        self._resolver = ModelResolver(self._models)
        self._readiness = ReadinessWatch([Watched(name, s.handle.app_name, s.handle.deployment_name)
                                          for name, s in self._models.items()])
        watch_admission({name: served.admission for name, served in self._models.items()})  # queue depth
        app.state.arrivals = ArrivalGate([served.admission for served in self._models.values()])
        self._timeout_s = http.request_timeout_s

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this at start and on each change of the user config (`traffic_user_config`): versions'
        weights change in place, with no restart and no lost request."""
        weights: dict[str, float] = user_config.get("traffic_weights", {})
        self._resolver.set_weights({name: w for name, w in weights.items() if name not in self._vision})
        self._vision_resolver.set_weights({name: w for name, w in weights.items() if name in self._vision})
        for model, split in [*self._resolver.splits().items(), *self._vision_resolver.splits().items()]:
            logger.info("traffic for %s: %s", model, ", ".join(f"{n} {s:.0%}" for n, s in split.shares().items()))

    async def _versioned(self, name: str, http_request: Request, user: str | None,
                         answer: Callable[[ServedModel], Awaitable[Response]]) -> Response:
        """`answer` from the model (or the version of one) a request naming `name` resolves to, or another
        version of it when the chosen one fails (deployments/model_resolver.py, version_fallback.py)."""
        headers = http_request.headers
        return await answer_with_fallback(self._resolver, name, headers.get(VERSION_HEADER),
                                          headers.get(SESSION_HEADER) or user, answer)

    @app.get("/health", response_model=None, responses=docs.HEALTH_RESPONSES)
    async def health(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", response_model=None, responses=docs.READY_RESPONSES)
    async def ready(self) -> Response:
        """200 while every model has a running replica (as Serve reports, deployments/readiness.py); 503
        (with what is missing) otherwise."""
        missing = await self._readiness.missing()
        if missing:
            return service_unavailable(f"models not ready: {'; '.join(missing)}", retry_after_s=5).response()
        return JSONResponse({"status": "ready", "models": sorted(self._models)})

    @app.get("/v1/models", response_model=None, responses=docs.MODELS_RESPONSES)
    async def list_models(self) -> dict[str, Any]:
        def card(name: str) -> dict[str, Any]:
            served = self._models[name]
            return {"id": name, "object": "model", "created": served.created, "owned_by": "warmserve",
                    "max_model_len": served.config.engine.max_model_len}

        cards = [card(name) for name in self._models] + bare_name_cards(self._resolver, card)
        return {"object": "list", "data": sorted(cards, key=lambda c: c["id"]) + self.vision_model_cards()}

    @app.post("/v1/chat/completions", openapi_extra=docs.CHAT_COMPLETION_BODY,
              responses=docs.CHAT_COMPLETION_RESPONSES)
    async def chat_completions(self, request: Request) -> Response:
        return await traced_request(request, "/v1/chat/completions", self._chat)

    async def _chat(self, request: Request) -> Response:
        body = await parse_traced(request, ChatCompletionRequest)

        async def answer(served: ServedModel) -> Response:  # versions may differ in tokenizer and limits
            return await self._complete(served, body, lambda: chat_prompt_ids(served.tokenizer, body),
                                        body.effective_max_tokens(), "messages", CHAT, request)

        return await self._versioned(body.model, request, body.user, answer)

    @app.post("/v1/completions", openapi_extra=docs.COMPLETION_BODY, responses=docs.COMPLETION_RESPONSES)
    async def completions(self, request: Request) -> Response:
        return await traced_request(request, "/v1/completions", self._completion)

    async def _completion(self, request: Request) -> Response:
        body = await parse_traced(request, CompletionRequest)

        async def answer(served: ServedModel) -> Response:
            return await self._complete(served, body, lambda: completion_prompt_ids(served.tokenizer, body),
                                        body.effective_max_tokens(), "prompt", COMPLETION, request)

        return await self._versioned(body.model, request, body.user, answer)

    async def _complete(self, served: ServedModel, body: ChatCompletionRequest | CompletionRequest,
                        encode_prompt: Callable[[], list[int]], requested_max_tokens: int | None,
                        prompt_param: str, framing: Framing, http_request: Request) -> Response:
        limits = served.config.limits
        check_sampling_limits(body, limits.max_n, limits.max_stop_sequences, limits.max_stop_length_chars)
        # Admitted (or refused, 429/503 with Retry-After) before the chat template and the tokenizer run:
        # under overload the requests beyond the bound cost a JSON parse each, not a tokenization, so they
        # are refused at once however many arrive together.
        key_name = api_key_name(http_request.scope)
        client = client_identity(http_request.headers.get("authorization"), body.user, key_name)
        try:
            ticket = served.admission.admit(client, body.n)
        finally:
            settle_arrival(http_request.scope)  # admitted or refused: no longer counted as arriving
        try:
            prompt = await served.tokenizer_thread.run(encode_prompt)
            return await self._complete_admitted(served, body, prompt, requested_max_tokens, prompt_param,
                                                 framing, ticket, key_name)
        except BaseException:
            ticket.release()
            raise

    async def _complete_admitted(self, served: ServedModel, body: ChatCompletionRequest | CompletionRequest,
                                 prompt: list[int], requested_max_tokens: int | None, prompt_param: str,
                                 framing: Framing, ticket: AdmissionTicket, key_name: str | None) -> Response:
        limits = served.config.limits
        check_token_bounds(limits, len(prompt), requested_max_tokens, prompt_param)
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
        # The key's tokens are reserved for the most the request may use (429 beyond its budget), settled
        # when the ticket is released at the request's end.
        limiter = key_limiter(key_name)
        settle_tokens = None if limiter is None else limiter.reserve_tokens(len(prompt) + body.n * max_tokens)
        usage = Usage()
        if settle_tokens is not None:
            ticket.on_release = lambda: settle_tokens(usage.prompt_tokens + usage.completion_tokens)
        return await self._run(served, body, requests, request_id, framing, ticket, usage)

    async def _run(self, served: ServedModel, body: ChatCompletionRequest | CompletionRequest,
                   requests: list[GenerationRequest], request_id: str, framing: Framing,
                   ticket: AdmissionTicket, usage: Usage) -> Response:
        span = trace.get_current_span()  # the request's server span (`traced_request`)
        bind_request(request_id, trace_id_of(span))
        if self._log_prompts:  # opt-in only: prompts often hold personal or secret data
            logger.info("prompt of %d tokens: %r", len(requests[0].prompt_token_ids),
                        served.tokenizer.decode(requests[0].prompt_token_ids))
        span.set_attributes({"warmserve.request_id": request_id, "gen_ai.request.model": body.model,
                             "gen_ai.response.model": served.config.name,
                             "gen_ai.request.max_tokens": requests[0].sampling.max_tokens,
                             "warmserve.n": body.n, "warmserve.stream": body.stream})
        failover = FailoverEvents(listener=lambda kind, details: span.add_event(f"failover.{kind}", details))
        reply = _Reply(framing, request_id, int(time.time()), body.model, body.n, usage, failover, ticket,
                       served.config.admission.retry_after_s, span)
        stream = merged_streams(requests, self._starter(served, reply.failover), reply.usage)
        # TTFT, ITL, E2E, tokens (/metrics), labelled with the served name, so each version has its own series.
        stream = observed_generation(served.config.name, stream, reply.usage)
        # Wait for the first chunk before answering, so a failure before any token is a proper error
        # status rather than a 200 followed by a broken stream.
        first = await self._first_chunk(stream, reply.retry_after_s)
        span.add_event("first_token")
        headers = {"x-request-id": request_id}
        version = split_version(served.config.name)[1]
        if version is not None:  # which version answered (the bare name's split, or the pin)
            headers[VERSION_HEADER] = version
        if first.chunk.replica_id:  # which replica the router chose (choice 0 when n > 1)
            headers["x-warmserve-replica"] = first.chunk.replica_id
        if reply.failover.retried:  # retried before its first token: already known when the headers go
            headers["x-warmserve-retried"] = str(reply.failover.retried)
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            events = self._sse(reply, first, stream, include_usage)
            ticket.release_with(events)
            return StreamingResponse(events, media_type=SSE_MEDIA_TYPE, headers=headers)
        try:
            return await self._full_response(reply, first, stream, headers)
        finally:
            ticket.release()

    async def _full_response(self, reply: _Reply, first: IndexedChunk, stream: AsyncIterator[IndexedChunk],
                             headers: dict[str, str]) -> Response:
        texts, finishes = [""] * reply.n, [None] * reply.n
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
            raise engine_failure_error(error, reply.retry_after_s) from None
        finally:
            await stream.aclose()
        full = reply.framing.full(reply.request_id, reply.created, reply.model, texts, finishes, reply.usage)
        record_usage(reply.span, reply.usage)
        failover = reply.failover
        if failover.happened:  # the client can tell a resumed answer from an undisturbed one
            full["warmserve"] = {"failover": failover.as_dict()}
            headers["x-warmserve-resumed"] = str(failover.resumed)
            headers["x-warmserve-retried"] = str(failover.retried)
        return JSONResponse(full, headers=headers)

    def _starter(self, served: ServedModel, failover: FailoverEvents):
        handle = served.stream
        parent = trace.set_span_in_context(trace.get_current_span())

        async def attempt(request: GenerationRequest) -> AsyncIterator[OutputChunk]:
            # One span per engine attempt; the router and the replica join it through the request.
            span = tracer().start_span("llm.attempt", context=parent,
                                       attributes={"warmserve.engine_request_id": request.request_id})
            request.trace_context = carrier_of(span)
            request.dispatched_at_ns = time.time_ns()
            response = call_with_own_request_id(handle.generate, request)
            finished, tokens = False, 0
            try:
                async for chunk in response:
                    if not tokens and chunk.replica_id:
                        span.set_attribute("warmserve.replica", chunk.replica_id)
                    tokens += len(chunk.token_ids)
                    # The caller stops at the finish chunk, before the stream's end arrives. The replica's
                    # generator ends by itself after its last chunk, so this is no abandoned request. A cancel
                    # here cost every request an RPC and a serialized TaskCancelledError in the replica.
                    finished = chunk.finish_reason is not None
                    yield chunk
                finished = True
            except GeneratorExit:
                # The caller closed the stream: after the finish chunk that is how every request ends;
                # before it, the attempt was abandoned (client gone, or failover moved on).
                if not finished:
                    span.set_status(Status(StatusCode.ERROR, "abandoned"))
                raise
            except BaseException as error:
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                raise
            finally:
                span.set_attribute("gen_ai.usage.output_tokens", tokens)
                span.end()
                if not finished:  # client gone or error: stop the replica's generator (aborts in-engine)
                    response.cancel()

        def start(request: GenerationRequest) -> AsyncIterator[OutputChunk]:
            return resumable_generation(request, attempt, served.config.failover, served.exclude_replica,
                                        failover, served.tokenizer.decode, left_behind=served.left_behind)

        return start

    async def _first_chunk(self, stream: AsyncIterator[IndexedChunk], retry_after_s: int) -> IndexedChunk:
        try:
            async with asyncio.timeout(self._timeout_s):
                first = await anext(stream, None)
        except TimeoutError:
            await stream.aclose()
            raise APIError(504, f"no response from the model within {self._timeout_s:.0f} s",
                           type="timeout") from None
        except Exception as error:
            await stream.aclose()
            raise engine_failure_error(error, retry_after_s) from None
        if first is None:
            raise internal_error("the engine finished without producing output")
        return first

    async def _sse(self, reply: _Reply, first: IndexedChunk, stream: AsyncIterator[IndexedChunk],
                   include_usage: bool) -> AsyncIterator[bytes]:
        framing, request_id, created, model = reply.framing, reply.request_id, reply.created, reply.model
        broken: str | None = None  # the error that cut the stream short, for the trace
        if framing.is_chat:  # OpenAI opens every chat choice with a role-only delta
            for index in range(reply.n):
                yield sse_event(framing.chunk(request_id, created, model, index, None, None, include_usage,
                                              first=True))
        try:
            item: IndexedChunk | None = first
            while item is not None:
                chunk = item.chunk
                if chunk.text or chunk.finish_reason:
                    event = framing.chunk(request_id, created, model, item.index, chunk.text,
                                          chunk.finish_reason, include_usage)
                    if chunk.finish_reason and reply.failover.happened:  # said in the choice's last chunk
                        event["warmserve"] = {"failover": reply.failover.as_dict()}
                    yield sse_event(event)
                item = await anext(stream, None)
        except Exception as error:
            # Headers are gone already: report in-band, as OpenAI does, then end the stream cleanly.
            broken = type(error).__name__
            yield sse_event(engine_failure_error(error, reply.retry_after_s).body())
        finally:
            reply.ticket.release()
            await stream.aclose()
            record_usage(reply.span, reply.usage)
            end_span(reply.span, 200, broken)
        if include_usage:
            yield sse_event(framing.usage_chunk(request_id, created, model, reply.usage))
        yield SSE_DONE
