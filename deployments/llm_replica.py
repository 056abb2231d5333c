"""The LLM replica deployment: one Ray Serve replica (a Ray actor) that owns one engine.

The ingress calls `generate` through a streaming DeploymentHandle with token ids already computed; the
replica never tokenizes. Serve's health check calls `check_health`, which asks the engine itself, and
Serve's routing-stats poll calls `record_routing_stats`, which is how routers learn each replica's load
and where its engine publishes KV cache events.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, Status, StatusCode

from configs.observability_schema import ObservabilityConfig
from configs.schema import LLMModelConfig
from deployments.llm_autoscaling import KV_CACHE_USAGE, TTFT_S
from deployments.replica_failures import ReplicaEndedRequestError, ReplicaEngineDeadError, raise_injected_error
from deployments.request_logging import bind_request, configure_logging
from deployments.tracing import configure_tracing
from engines.engine_processes import EngineProcesses
from engines.fake_engine import FakeLLMEngine
from engines.kv_events_endpoint import KVEventsEndpoint
from engines.kv_events_relay import KVEventsRelay, cluster_secret
from engines.protocol import EngineDeadError, EngineEndedRequestError, LLMEngine
from engines.tokenizer import PromptTokenizer
from engines.trace_context import context_from_carrier, trace_id_of, tracer
from engines.types import EngineStats, GenerationRequest, OutputChunk
from engines.vllm_engine import VLLMEngine
from router.replica_stats import ReplicaRoutingStats

logger = logging.getLogger("warmserve.replica")


def _node_id() -> str | None:
    """The Ray node this replica runs on: routers follow its KV events only from the same node."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # not inside a Ray worker (unit tests)
        return None


def _node_address() -> str:
    """The address routers on other nodes reach this replica's KV event relay on."""
    import ray

    return ray.util.get_node_ip_address()


def make_engine(model: LLMModelConfig, model_path: Path, kv_events: KVEventsEndpoint | None,
                replica_id: str = "local") -> LLMEngine:
    if model.engine.kind == "fake":
        tokenizer = PromptTokenizer(model_path)
        return FakeLLMEngine(model.engine, detokenize=tokenizer.decode, kv_events=kv_events, replica_id=replica_id)
    return VLLMEngine(model_path, model.engine, model.placement, kv_events=kv_events)


def _own_replica_id() -> str:
    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # constructed outside Serve (tests)
        return "local"


def _end_generation_span(span: Span, tokens: int, finish: str | None) -> None:
    """End the replica's generation span with what it produced; a second call does nothing (an ended span,
    like an untraced request's, no longer records)."""
    if span.is_recording():
        span.set_attributes({"gen_ai.usage.output_tokens": tokens, "gen_ai.response.finish_reason":
                             finish or "none"})
        span.end()


class LLMReplica:
    """Wrapped by `serve.deployment` in the app builder (options come from the typed config there)."""

    async def __init__(self, model: LLMModelConfig, model_path: str,
                       observability: ObservabilityConfig | None = None) -> None:
        observability = observability or ObservabilityConfig()
        configure_tracing(observability.tracing, "llm-replica")
        configure_logging(observability.logging, "llm-replica")
        self._model = model
        self._replica_id = _own_replica_id()
        self._node_id = _node_id()
        self._kv_events = KVEventsEndpoint() if model.engine.kv_events else None
        self._engine = make_engine(model, Path(model_path), self._kv_events, self._replica_id)
        # A real engine runs in processes of its own, which must never outlive this replica.
        self._engine_processes = EngineProcesses() if model.engine.kind != "fake" else None
        if self._engine_processes is not None:
            self._engine_processes.start_guard()
        self._kv_events_relay: KVEventsRelay | None = None
        try:
            await self._engine.start()
            if self._kv_events is not None and model.engine.kv_events_network == "cluster":
                self._kv_events_relay = KVEventsRelay(self._kv_events.address, _node_address(), cluster_secret(),
                                                      self._kv_events.replay_address)
        except BaseException:
            await self._end_engine()
            raise
        # Why the engine can no longer serve, once it said so; the replica then fails fast and reports
        # itself unhealthy instead of handing every request to a dead engine.
        self._engine_dead: str | None = None
        self._in_flight = 0
        self._last_progress = time.monotonic()
        # TTFTs of requests whose first token came since the last autoscaling report: sum and count.
        self._ttft_sum_s, self._ttft_count = 0.0, 0
        self._fault_rng = random.Random(self._replica_id)  # engine.injected_error_rate's draws
        logger.info("replica %s for %s ready (engine=%s)", self._replica_id, model.name, model.engine.kind)

    def _dead(self, reason: str) -> ReplicaEngineDeadError:
        if self._engine_dead is None:
            self._engine_dead = reason
            logger.error("replica %s: engine dead (%s); failing its requests over", self._replica_id, reason)
        return ReplicaEngineDeadError(f"engine of replica {self._replica_id} is dead: {self._engine_dead}",
                                      self._replica_id)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        if self._engine_dead is not None:
            raise self._dead(self._engine_dead)
        # A request failure, not a dead engine: failover does not hide it, a rollout's judge sees it.
        raise_injected_error(self._model.engine.injected_error_rate, self._fault_rng, self._replica_id)
        # Serve cancels this generator when the caller goes away; closing the engine's stream aborts the
        # request inside the engine, so an abandoned request stops consuming KV cache at once.
        span = self._generation_span(request)
        stream = self._engine.generate(request)
        first, tokens, finish = True, 0, None
        started = time.monotonic()
        if not self._in_flight:  # idle until now: the wedge clock starts with this request
            self._last_progress = time.monotonic()
        self._in_flight += 1
        try:
            async for chunk in stream:
                self._last_progress = time.monotonic()
                if first:
                    chunk.replica_id, first = self._replica_id, False
                    self._ttft_sum_s += self._last_progress - started
                    self._ttft_count += 1
                    span.add_event("first_token", {"warmserve.ttft_s": self._last_progress - started,
                                                   "gen_ai.usage.input_tokens": chunk.num_prompt_tokens or 0,
                                                   "warmserve.cached_tokens": chunk.num_cached_prompt_tokens or 0})
                tokens += len(chunk.token_ids)
                finish = chunk.finish_reason or finish
                if finish is not None:
                    # The generation is over once its last chunk is handed off. The caller stops reading
                    # there and ends its own spans at once, while this generator resumes only later.
                    _end_generation_span(span, tokens, finish)
                yield chunk
        except EngineDeadError as error:
            span.set_status(Status(StatusCode.ERROR, "engine dead"))
            raise self._dead(str(error)) from None
        except EngineEndedRequestError as error:  # this request only: the ingress moves it elsewhere
            span.set_status(Status(StatusCode.ERROR, "ended by the engine"))
            raise ReplicaEndedRequestError(f"replica {self._replica_id}: {error}", self._replica_id) from None
        finally:
            self._in_flight -= 1
            _end_generation_span(span, tokens, finish)
            await stream.aclose()

    def _generation_span(self, request: GenerationRequest) -> Span:
        """The replica's part of the request's trace: how long Serve queued it (from the ingress's hand-off
        to here) and the generation itself. Untraced requests get a non-recording span."""
        parent = context_from_carrier(request.trace_context)
        bind_request(request.request_id, None if parent is None else trace_id_of(trace.get_current_span(parent)))
        if parent is None:
            return INVALID_SPAN
        now_ns = time.time_ns()
        if request.dispatched_at_ns:
            tracer().start_span("serve.queue", context=parent, start_time=request.dispatched_at_ns).end(now_ns)
        return tracer().start_span("replica.generate", context=parent, start_time=now_ns, attributes={
            "warmserve.replica": self._replica_id, "warmserve.engine_request_id": request.request_id,
            "gen_ai.request.model": self._model.name, "gen_ai.request.max_tokens": request.sampling.max_tokens})

    async def stats(self) -> EngineStats:
        return await self._engine.stats()

    async def record_routing_stats(self) -> dict[str, Any]:
        """Called by Serve every `router.stats_period_s`; routers read it as `RunningReplica.routing_stats`."""
        stats = await self._engine.stats()
        return ReplicaRoutingStats(
            num_running=stats.num_running, num_waiting=stats.num_waiting, kv_cache_usage=stats.kv_cache_usage,
            kv_events_endpoint=stats.kv_events_endpoint, node_id=self._node_id,
            kv_events_replay_endpoint=self._kv_events.replay_address if stats.kv_events_endpoint else None,
            kv_events_remote_endpoint=self._kv_events_relay.address if self._kv_events_relay else None,
            kv_events_remote_replay_endpoint=self._kv_events_relay.replay_address if self._kv_events_relay else None,
            block_size=self._engine.block_size,
            engine_healthy=self._engine_dead is None, reported_at=time.time(),
            prefix_cache_hit_rate=stats.prefix_cache_hit_rate,
        ).to_dict()

    async def record_autoscaling_stats(self) -> dict[str, float]:
        """Called by Serve when the model autoscales; `LLMAutoscalingPolicy` reads the averages."""
        stats = await self._engine.stats()
        ttft = self._ttft_sum_s / self._ttft_count if self._ttft_count else 0.0
        self._ttft_sum_s, self._ttft_count = 0.0, 0
        return {KV_CACHE_USAGE: stats.kv_cache_usage, TTFT_S: ttft}

    async def check_health(self) -> None:
        """Serve's health check: the engine's own check, plus progress while requests are in flight (an
        engine that stopped emitting with work in hand is wedged, though its process is alive)."""
        if self._engine_dead is not None:
            raise self._dead(self._engine_dead)
        try:
            await self._engine.check_health()
        except EngineDeadError as error:
            raise self._dead(str(error)) from None
        idle_for = time.monotonic() - self._last_progress
        if self._in_flight and idle_for > self._model.health.wedged_after_s:
            raise RuntimeError(f"engine of replica {self._replica_id} is wedged: {self._in_flight} requests in "
                               f"flight and no output for {idle_for:.0f} s")

    async def _end_engine(self) -> None:
        try:
            await self._engine.shutdown()
        finally:
            if self._engine_processes is not None:
                await asyncio.to_thread(self._engine_processes.end_all)
            if self._kv_events_relay is not None:
                self._kv_events_relay.close()
            if self._kv_events is not None:
                self._kv_events.close()

    async def __del__(self) -> None:
        await self._end_engine()
