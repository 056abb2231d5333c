"""The ingress's tokenizer thread: work runs off the event loop, one call at a time, in the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

from deployments.tokenizer_thread import TokenizerThread

REQUEST = contextvars.ContextVar("request", default="none")


def test_work_runs_on_the_models_thread_in_the_callers_context() -> None:
    thread = TokenizerThread("smol")

    async def one(name: str) -> tuple[str, str]:
        REQUEST.set(name)
        return await thread.run(lambda: (threading.current_thread().name, REQUEST.get()))

    async def main() -> list[tuple[str, str]]:
        return await asyncio.gather(one("a"), one("b"))

    results = asyncio.run(main())
    thread.close()
    assert [context for _, context in results] == ["a", "b"]
    assert all(name.startswith("tokenizer-smol") for name, _ in results), results


def test_calls_never_overlap_and_the_loop_keeps_running_meanwhile() -> None:
    thread = TokenizerThread("smol")
    active, overlaps = 0, 0

    def work() -> None:  # a tokenizer must not be entered twice at once
        nonlocal active, overlaps
        active += 1
        overlaps += active > 1
        time.sleep(0.05)
        active -= 1

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        beat = asyncio.create_task(ticker())
        await asyncio.gather(*(thread.run(work) for _ in range(6)))
        beat.cancel()
        return ticks

    ticks = asyncio.run(main())
    thread.close()
    assert overlaps == 0
    assert ticks >= 10  # 0.3 s of work on the thread; inline, the loop would not have ticked at all
