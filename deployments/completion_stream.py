"""Running one API request as n engine requests and merging their streams.

Shared by the chat and completions routes: they differ only in how chunks are framed, not in how engine
streams are started, interleaved, cancelled and counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from engines.types import GenerationRequest, OutputChunk

# Starts one engine request and returns its chunk stream (a Serve handle call in production).
StartStream = Callable[[GenerationRequest], AsyncIterator[OutputChunk]]


@dataclass(slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens},
        }


@dataclass(slots=True)
class IndexedChunk:
    index: int
    chunk: OutputChunk


async def merged_streams(requests: list[GenerationRequest], start: StartStream,
                         usage: Usage) -> AsyncIterator[IndexedChunk]:
    """Yield chunks of all requests as they arrive, tagged with the choice index; fill `usage`.

    With one request this is a plain pass-through (no tasks, no queue): the common case pays nothing.
    Closing the iterator cancels every engine stream still running.
    """
    usage.prompt_tokens = len(requests[0].prompt_token_ids)
    if len(requests) == 1:
        stream = start(requests[0])
        try:
            async for chunk in stream:
                _count(usage, chunk, first_choice=True)
                yield IndexedChunk(0, chunk)
        finally:
            await _close(stream)
        return

    queue: asyncio.Queue[IndexedChunk | BaseException | None] = asyncio.Queue()

    async def pump(index: int, request: GenerationRequest) -> None:
        stream = start(request)
        try:
            async for chunk in stream:
                await queue.put(IndexedChunk(index, chunk))
        except BaseException as error:  # surfaced to the consumer below, which decides the status
            await queue.put(error)
            raise
        finally:
            await _close(stream)
            await queue.put(None)

    tasks = [asyncio.create_task(pump(i, r)) for i, r in enumerate(requests)]
    remaining = len(tasks)
    try:
        while remaining:
            item = await queue.get()
            if item is None:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                _count(usage, item.chunk, first_choice=item.index == 0)
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _count(usage: Usage, chunk: OutputChunk, first_choice: bool) -> None:
    usage.completion_tokens += len(chunk.token_ids)
    # Cached prompt tokens are a property of the prompt: count them once, from the first choice.
    if first_choice and chunk.num_cached_prompt_tokens is not None:
        usage.cached_tokens = chunk.num_cached_prompt_tokens


async def _close(stream: AsyncIterator[OutputChunk]) -> None:
    close = getattr(stream, "aclose", None)
    if close is not None:
        await close()
