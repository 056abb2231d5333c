"""The engine contracts the deployments program against (vLLM, the fake engine, vision backends later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from engines.types import EngineStats, GenerationRequest, OutputChunk


class EngineDeadError(RuntimeError):
    """The engine cannot serve any more requests; the replica must be replaced."""


@runtime_checkable
class LLMEngine(Protocol):
    """One LLM engine owned by one replica. Called only from that replica's event loop."""

    block_size: int
    max_model_len: int

    async def start(self) -> None:
        """Load weights and allocate the KV cache; returns when requests can be served."""

    def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        """Stream deltas for one request; the last chunk has `finish_reason` set.

        Closing the iterator early (client gone) aborts the request inside the engine.
        """

    async def abort(self, request_id: str) -> None: ...

    async def stats(self) -> EngineStats: ...

    async def check_health(self) -> None:
        """Raise `EngineDeadError` if the engine can no longer serve."""

    async def shutdown(self) -> None: ...
