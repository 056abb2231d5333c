"""Online mode: each request goes over HTTP to a running warmserve app's OpenAI endpoint.

Runs in the job's driver with asyncio: the work is I/O here, the Serve app does the compute (and its
router spreads requests over replicas by KV cache). At most `concurrency` requests are in flight; 429 and
503 (and 502/504, no answer at all) are retried after the server's `Retry-After` or an exponential
backoff (`cluster.batch_backoff`); a request that still fails keeps the endpoint's last answer as its
output line, so nothing is dropped silently. Shards are committed as they finish, through `on_shard`.

An endpoint with API keys gets the job's key (`OnlineSettings.api_key`). A refused key (401, 403) says
nothing about the request, only about the job's credentials: it is never committed as a line's answer
(a resumed run would skip that line for good); the job stops with `EndpointAuthError` instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

from cluster.batch_backoff import BackoffPolicy
from cluster.batch_format import error_line, response_line
from cluster.batch_input import BatchLine

OnShard = Callable[[list[dict[str, Any]], float], Awaitable[None]]
Sleep = Callable[[float], Awaitable[None]]
AUTH_FAILURES = (401, 403)


class EndpointAuthError(RuntimeError):
    """The endpoint refused the job's API key (or its absence): no line can succeed until it is fixed."""


@dataclass(slots=True, frozen=True)
class OnlineSettings:
    endpoint: str  # base URL without /v1, e.g. http://127.0.0.1:8000
    concurrency: int = 8
    shards_in_flight: int = 2
    request_timeout_s: float = 600.0
    policy: BackoffPolicy = BackoffPolicy()
    api_key: str | None = None  # sent as `Authorization: Bearer` (never logged)


async def send_with_retries(client: httpx.AsyncClient, line: BatchLine, policy: BackoffPolicy,
                            sleep: Sleep = asyncio.sleep, now: Callable[[], float] = time.time,
                            log: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """One input line -> its output line, retrying what the endpoint says is temporary."""
    body = {k: v for k, v in line.body.items() if k not in ("stream", "stream_options")}
    body["stream"] = False  # one JSON answer per line; the batch output has no place for SSE events
    attempt = 0
    while True:
        attempt += 1
        try:
            response = await client.post(line.url, json=body)
        except httpx.HTTPError as error:  # connection refused/reset, timeout: no HTTP answer
            if not policy.should_retry(attempt, None):
                return error_line(line.custom_id, "connection_error",
                                  f"no answer from the endpoint after {attempt} attempts: "
                                  f"{type(error).__name__}: {error}")
            wait_s = policy.delay_s(attempt, None, now())
            log(f"{line.custom_id}: {type(error).__name__}, retry {attempt} in {wait_s:.1f} s")
            await sleep(wait_s)
            continue
        if response.status_code in AUTH_FAILURES:
            body = _body(response)
            error = body.get("error") if isinstance(body, dict) else None
            message = error.get("message") if isinstance(error, dict) else response.text[:200]
            raise EndpointAuthError(f"the endpoint refused the job's credentials (HTTP {response.status_code}: "
                                    f"{message})")
        if policy.should_retry(attempt, response.status_code):
            wait_s = policy.delay_s(attempt, response.headers.get("retry-after"), now())
            log(f"{line.custom_id}: HTTP {response.status_code}, retry {attempt} in {wait_s:.1f} s")
            await sleep(wait_s)
            continue
        return response_line(line.custom_id, response.status_code, response.headers.get("x-request-id"),
                             _body(response))


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:  # a proxy's HTML error page: keep the text in OpenAI's error shape
        return {"error": {"message": response.text[:2000], "type": "invalid_response", "param": None,
                          "code": None}}


async def run_online(shards: list[list[BatchLine]], settings: OnlineSettings, on_shard: OnShard,
                     transport: httpx.AsyncBaseTransport | None = None, sleep: Sleep = asyncio.sleep,
                     log: Callable[[str], None] = lambda _: None) -> None:
    """Run every shard, at most `settings.shards_in_flight` at a time, and `on_shard` each one in full.

    `transport` lets tests put a fake server under the real httpx client.
    """
    slots = asyncio.Semaphore(settings.concurrency)
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
    headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
    async with httpx.AsyncClient(base_url=settings.endpoint.rstrip("/"), timeout=settings.request_timeout_s,
                                 limits=limits, transport=transport, headers=headers) as client:

        async def one(line: BatchLine) -> dict[str, Any]:
            # The slot is held through backoff waits: an overloaded endpoint sees fewer requests, not more.
            async with slots:
                return await send_with_retries(client, line, settings.policy, sleep, log=log)

        async def shard(lines: list[BatchLine]) -> None:
            started = time.monotonic()
            records = await asyncio.gather(*(one(line) for line in lines))
            await on_shard(list(records), time.monotonic() - started)

        running: set[asyncio.Task[None]] = set()
        try:
            for lines in shards:
                while len(running) >= settings.shards_in_flight:
                    done, running = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                    for task in done:
                        task.result()  # a commit failure stops the job
                running.add(asyncio.create_task(shard(lines)))
            for task in asyncio.as_completed(running):
                await task
        finally:
            for task in running:
                task.cancel()
