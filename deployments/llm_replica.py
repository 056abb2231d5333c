"""The LLM replica deployment: one Ray Serve replica (a Ray actor) that owns one engine.

The ingress calls `generate` through a streaming DeploymentHandle with token ids already computed; the
replica never tokenizes. Serve's health check calls `check_health`, which asks the engine itself.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

from configs.schema import LLMModelConfig
from engines.fake_engine import FakeLLMEngine
from engines.protocol import LLMEngine
from engines.tokenizer import PromptTokenizer
from engines.types import EngineStats, GenerationRequest, OutputChunk
from engines.vllm_engine import VLLMEngine

logger = logging.getLogger("warmserve.replica")


def _free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_engine(model: LLMModelConfig, model_path: Path) -> LLMEngine:
    kv_port = _free_tcp_port() if model.engine.kv_events else None
    if model.engine.kind == "fake":
        tokenizer = PromptTokenizer(model_path)
        return FakeLLMEngine(model.engine, detokenize=tokenizer.decode, kv_events_port=kv_port)
    return VLLMEngine(model_path, model.engine, model.placement, kv_events_port=kv_port)


class LLMReplica:
    """Wrapped by `serve.deployment` in the app builder (options come from the typed config there)."""

    async def __init__(self, model: LLMModelConfig, model_path: str) -> None:
        self._model = model
        self._engine = make_engine(model, Path(model_path))
        await self._engine.start()
        logger.info("replica for %s ready (engine=%s)", model.name, model.engine.kind)

    async def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        # Serve cancels this generator when the caller goes away; closing the engine's stream aborts the
        # request inside the engine, so an abandoned request stops consuming KV cache at once.
        stream = self._engine.generate(request)
        try:
            async for chunk in stream:
                yield chunk
        finally:
            await stream.aclose()

    async def stats(self) -> EngineStats:
        return await self._engine.stats()

    async def check_health(self) -> None:
        await self._engine.check_health()

    async def __del__(self) -> None:
        await self._engine.shutdown()
