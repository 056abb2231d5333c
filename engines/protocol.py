"""The engine contracts the deployments program against (vLLM, the fake engine, vision backends later)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol, runtime_checkable

from engines.types import EngineStats, FinishReason, GenerationRequest, OutputChunk


class EngineDeadError(RuntimeError):
    """The engine cannot serve any more requests; the replica must be replaced."""


class EngineEndedRequestError(RuntimeError):
    """The engine ended one request on its own while its caller still wanted it: vLLM's `abort` finish
    from the engine's side (the caller's own aborts never reach it), or `error`, a retryable
    request-level failure such as a failed KV load. Another replica can serve the request."""


def served_finish_reason(reason: str | None) -> FinishReason | None:
    """An engine's finish reason as a client sees it; raises `EngineEndedRequestError` for the reasons
    that mean the request did not finish (the ingress then fails it over)."""
    if reason is None or reason in ("stop", "length"):
        return reason  # type: ignore[return-value]
    if reason == "repetition":  # vLLM cut a repetitive generation short: the model stopped, as far as a client knows
        return "stop"
    raise EngineEndedRequestError(f"the engine ended the request itself (finish reason {reason!r})")


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
