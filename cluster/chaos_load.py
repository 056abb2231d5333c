"""A bounded asyncio load of greedy streaming completions on the OpenAI endpoint, recording each request's
outcome exactly (text, finish reason, status, failover metadata), so a faulted run can be compared with an
undisturbed one request by request."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import httpx


@dataclass(slots=True)
class RequestOutcome:
    index: int
    status: int
    text: str
    finish_reason: str | None
    replica: str | None
    error: str | None  # an HTTP error body, an in-band error event or a transport failure
    resumed: int
    retried: int
    seconds: float
    retry_after: str | None = None  # the Retry-After header of a refusal

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error is None and self.finish_reason is not None


def chaos_prompt(index: int) -> str:
    """Distinct prompts with some shared structure, deterministic from the index."""
    topics = ("rivers", "mountains", "the moon", "bread", "bridges", "clocks", "bees", "glass")
    return f"Write two sentences about {topics[index % len(topics)]}, number {index}."


async def one_request(client: httpx.AsyncClient, base_url: str, model: str, index: int,
                      max_tokens: int, ignore_eos: bool = False) -> RequestOutcome:
    body = {"model": model, "messages": [{"role": "user", "content": chaos_prompt(index)}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True, "ignore_eos": ignore_eos}
    start = time.monotonic()
    text: list[str] = []
    finish = replica = error = None
    resumed = retried = 0
    status = 0
    retry_after = None
    try:
        async with client.stream("POST", f"{base_url}/chat/completions", json=body) as response:
            status = response.status_code
            replica = response.headers.get("x-warmserve-replica")
            retry_after = response.headers.get("retry-after")
            if status != 200:
                error = (await response.aread()).decode(errors="replace")
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[6:])
                    if "error" in event:
                        error = json.dumps(event["error"])
                        continue
                    for choice in event.get("choices", []):
                        text.append(choice.get("delta", {}).get("content") or "")
                        finish = choice.get("finish_reason") or finish
                    failover = event.get("warmserve", {}).get("failover")
                    if failover:
                        resumed, retried = int(failover["resumed"]), int(failover["retried"])
    except httpx.HTTPError as transport:
        error = f"{type(transport).__name__}: {transport}"
    return RequestOutcome(index, status, "".join(text), finish, replica, error, resumed, retried,
                          time.monotonic() - start, retry_after)


async def run_load(base_url: str, model: str, requests: int, concurrency: int, max_tokens: int,
                   timeout_s: float = 3600.0, ignore_eos: bool = False, first_index: int = 0) -> list[RequestOutcome]:
    """`requests` requests, at most `concurrency` at once; every one gets an outcome (nothing is dropped)."""
    limit = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        async def bounded(index: int) -> RequestOutcome:
            async with limit:
                return await one_request(client, base_url, model, index, max_tokens, ignore_eos)

        return list(await asyncio.gather(*(bounded(first_index + i) for i in range(requests))))
