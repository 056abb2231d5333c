"""The thread a model's chat template and tokenizer run on in the ingress, off the event loop.

The ingress's event loop routes requests, streams tokens, answers /health and /ready; a long prompt takes
tens of milliseconds to template and encode, and a burst of them inline would hold the loop for seconds
(docs/benchmarks.md, "Ingress event loop"). One thread per model, because a Hugging Face fast tokenizer
must not be used from two threads at once ("Already borrowed"); the template is Python and holds the GIL
anyway, so more threads would not encode faster, but the loop gets the GIL back at every switch interval.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class TokenizerThread:
    def __init__(self, model_name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tokenizer-{model_name}")

    async def run(self, work: Callable[[], T]) -> T:
        """`work` run on the thread in the caller's context, so the spans it opens join the request's trace."""
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, context.run, work)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
