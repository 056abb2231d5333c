"""A paced client load for rollout tests: one request every 1/rate s from a background thread, every
outcome kept (status, the version that answered, and the version a fallback came from, with when it was
sent)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

from deployments.version_fallback import FALLBACK_HEADER

Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


class PacedLoad:
    """`with PacedLoad(send, rate_per_s) as load:` sends until the block ends, then waits for the requests
    in flight."""

    def __init__(self, send: Send, rate_per_s: float) -> None:
        self._send, self._interval_s = send, 1 / rate_per_s
        self.outcomes = Counter[tuple[int, str | None]]()  # (status, x-warmserve-version)
        self.fallbacks = Counter[str]()  # the version a request failed on before another answered it
        self.fallback_sent_at: list[float] = []  # time.monotonic() when each fallen-back request was sent
        self.error_bodies: dict[int, str] = {}  # the first body of each non-200 status, for the assertion's message
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=60) as client:
            async def one() -> None:
                sent_at = time.monotonic()
                reply = await self._send(client)
                self.outcomes[(reply.status_code, reply.headers.get("x-warmserve-version"))] += 1
                if reply.status_code != 200:
                    self.error_bodies.setdefault(reply.status_code, reply.text[:300])
                if FALLBACK_HEADER in reply.headers:
                    self.fallbacks[reply.headers[FALLBACK_HEADER]] += 1
                    self.fallback_sent_at.append(sent_at)
            tasks = set()
            while not self._stop.is_set():
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                await asyncio.sleep(self._interval_s)
            await asyncio.gather(*tasks)

    def __enter__(self) -> PacedLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)
