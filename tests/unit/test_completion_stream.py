from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from deployments.completion_stream import Usage, merged_streams
from engines.types import GenerationRequest, OutputChunk, SamplingSpec


def _requests(n: int) -> list[GenerationRequest]:
    return [GenerationRequest(f"r-{i}", [1, 2, 3], SamplingSpec(max_tokens=3)) for i in range(n)]


async def _fake_stream(request: GenerationRequest) -> AsyncIterator[OutputChunk]:
    for step in range(3):
        await asyncio.sleep(0)
        yield OutputChunk(request.request_id, [step], str(step), "length" if step == 2 else None, 3, 2)


def test_single_request_passes_through_and_counts() -> None:
    async def run() -> tuple[list, Usage]:
        usage = Usage()
        return [c async for c in merged_streams(_requests(1), _fake_stream, usage)], usage

    chunks, usage = asyncio.run(run())
    assert [c.index for c in chunks] == [0, 0, 0]
    assert (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) == (3, 3, 2)


def test_n_requests_are_merged_with_indexes() -> None:
    async def run() -> tuple[list, Usage]:
        usage = Usage()
        return [c async for c in merged_streams(_requests(3), _fake_stream, usage)], usage

    chunks, usage = asyncio.run(run())
    assert sorted(c.index for c in chunks) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert usage.completion_tokens == 9


def test_error_in_one_stream_surfaces_and_cancels_the_rest() -> None:
    cancelled = []

    async def flaky(request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        try:
            if request.request_id == "r-1":
                raise ConnectionError("replica died")
            for step in range(100):
                await asyncio.sleep(0.01)
                yield OutputChunk(request.request_id, [step], "x")
        finally:
            cancelled.append(request.request_id)

    async def run() -> None:
        async for _ in merged_streams(_requests(2), flaky, Usage()):
            pass

    with pytest.raises(ConnectionError):
        asyncio.run(run())
    assert sorted(cancelled) == ["r-0", "r-1"]
