"""The LLM replica deployment: one Ray Serve replica (a Ray actor) that owns one engine.

The ingress calls `generate` through a streaming DeploymentHandle with token ids already computed; the
replica never tokenizes. Serve's health check calls `check_health`, which asks the engine itself, and
Serve's routing-stats poll calls `record_routing_stats`, which is how routers learn each replica's load
and where its engine publishes KV cache events.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from configs.schema import LLMModelConfig
from engines.fake_engine import FakeLLMEngine
from engines.protocol import LLMEngine
from engines.tokenizer import PromptTokenizer
from engines.types import EngineStats, GenerationRequest, OutputChunk
from engines.vllm_engine import VLLMEngine
from router.replica_stats import ReplicaRoutingStats

logger = logging.getLogger("warmserve.replica")


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def _node_address() -> str:
    """The address other nodes reach this replica's KV event publisher on (loopback outside Ray)."""
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # not inside a Ray worker (unit tests): loopback is the only peer
        return "127.0.0.1"


def make_engine(model: LLMModelConfig, model_path: Path) -> LLMEngine:
    kv_port = _free_tcp_port() if model.engine.kv_events else None
    host = _node_address()
    if model.engine.kind == "fake":
        tokenizer = PromptTokenizer(model_path)
        return FakeLLMEngine(model.engine, detokenize=tokenizer.decode, kv_events_port=kv_port,
                             kv_events_host=host)
    return VLLMEngine(model_path, model.engine, model.placement, kv_events_port=kv_port, kv_events_host=host)


def _own_replica_id() -> str:
    from ray import serve

    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # constructed outside Serve (tests)
        return "local"


class LLMReplica:
    """Wrapped by `serve.deployment` in the app builder (options come from the typed config there)."""

    async def __init__(self, model: LLMModelConfig, model_path: str) -> None:
        self._model = model
        self._replica_id = _own_replica_id()
        self._engine = make_engine(model, Path(model_path))
        await self._engine.start()
        logger.info("replica %s for %s ready (engine=%s)", self._replica_id, model.name, model.engine.kind)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        # Serve cancels this generator when the caller goes away; closing the engine's stream aborts the
        # request inside the engine, so an abandoned request stops consuming KV cache at once.
        stream = self._engine.generate(request)
        first = True
        try:
            async for chunk in stream:
                if first:
                    chunk.replica_id, first = self._replica_id, False
                yield chunk
        finally:
            await stream.aclose()

    async def stats(self) -> EngineStats:
        return await self._engine.stats()

    async def record_routing_stats(self) -> dict[str, Any]:
        """Called by Serve every `router.stats_period_s`; routers read it as `RunningReplica.routing_stats`."""
        stats = await self._engine.stats()
        return ReplicaRoutingStats(
            num_running=stats.num_running, num_waiting=stats.num_waiting, kv_cache_usage=stats.kv_cache_usage,
            kv_events_endpoint=stats.kv_events_endpoint, block_size=self._engine.block_size,
        ).to_dict()

    async def check_health(self) -> None:
        await self._engine.check_health()

    async def __del__(self) -> None:
        await self._engine.shutdown()
