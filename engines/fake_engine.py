"""`FakeLLMEngine`: a deterministic in-process engine for fast tests of everything around the engine.

It "generates" from the context (greedy: the token in the middle of prompt + output so far, a pure
function of the context as a real model's greedy step is, so a request resumed elsewhere with its output
appended continues exactly; sampled: prompt tokens drawn with a seeded RNG), keeps an
LRU prefix cache of full blocks keyed by chained content hashes, reports cached prompt tokens like vLLM
does, and publishes BlockStored / BlockRemoved events over ZMQ in vLLM's wire format when given a port.

Fault injection for failover tests: with `engine.fake_fault_dir` set, a request that starts while
`<dir>/<replica id>.json` exists consumes that file, `{"die_after_tokens": N}` or
`{"stall_after_tokens": N, "stall_s": S}` or `{"error_after_tokens": N}`, and after N of its tokens the
whole engine dies (every stream raises `EngineDeadError`, as vLLM's do when its engine-core process is
killed), stops emitting for S seconds, or ends that one request with vLLM's `error` finish reason.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable

from configs.schema import EngineConfig
from engines.block_hash import chained_block_hashes
from engines.kv_event_codec import encode_payload, encode_seq
from engines.kv_event_replay import ReplayServer
from engines.kv_events_endpoint import KVEventsEndpoint
from engines.protocol import EngineDeadError, served_finish_reason
from engines.types import (
    EngineStats,
    GenerationRequest,
    KVBlockRemoved,
    KVBlockStored,
    KVEvent,
    KVEventBatch,
    OutputChunk,
)

Detokenize = Callable[[list[int]], str]
DEFAULT_CAPACITY_BLOCKS = 4096


class FakeLLMEngine:
    def __init__(self, engine: EngineConfig, detokenize: Detokenize, kv_events: KVEventsEndpoint | None = None,
                 capacity_blocks: int = DEFAULT_CAPACITY_BLOCKS, replica_id: str = "local") -> None:
        self.block_size = engine.block_size
        self.max_model_len = engine.max_model_len
        self._token_latency_s = engine.fake_token_latency_s
        self._stream_interval = engine.stream_interval
        self._detokenize = detokenize
        self._capacity_blocks = capacity_blocks
        self._cache: OrderedDict[int, None] = OrderedDict()
        self._running: set[str] = set()
        self._aborted: set[str] = set()
        self._queried_tokens = 0
        self._hit_tokens = 0
        self._kv_events = kv_events if engine.kv_events else None
        self._replay: ReplayServer | None = None
        self._publisher = None
        self._seq = 0
        self._dead = False
        self._fault_file = Path(engine.fake_fault_dir) / f"{replica_id}.json" if engine.fake_fault_dir else None
        self._stalled_until = 0.0

    @property
    def kv_events_endpoint(self) -> str | None:
        return self._kv_events.address if self._kv_events else None

    async def start(self) -> None:
        if self._kv_events is not None:
            import zmq

            self._publisher = zmq.Context.instance().socket(zmq.PUB)
            self._publisher.bind(self._kv_events.address)
            self._replay = ReplayServer(self._kv_events.replay_address)

    def _publish(self, events: list[KVEvent]) -> None:
        if self._publisher is None or not events:
            return
        payload = encode_payload(KVEventBatch(seq=self._seq, timestamp_s=time.time(), events=events))
        self._publisher.send_multipart([b"", encode_seq(self._seq), payload])
        if self._replay is not None:
            self._replay.keep(self._seq, payload)
        self._seq += 1

    def _cache_prompt(self, prompt: list[int]) -> int:
        """Mark the prompt's full blocks as cached; return how many leading prompt tokens already were."""
        hashes = chained_block_hashes(prompt, self.block_size)
        hit_blocks = 0
        for h in hashes:
            if h not in self._cache:
                break
            hit_blocks += 1
        events: list[KVEvent] = []
        parent: int | None = hashes[hit_blocks - 1] if hit_blocks else None
        new_hashes = hashes[hit_blocks:]
        for h in hashes[:hit_blocks]:
            self._cache.move_to_end(h)
        if new_hashes:
            for h in new_hashes:
                self._cache[h] = None
            start = hit_blocks * self.block_size
            events.append(KVBlockStored(block_hashes=new_hashes, parent_block_hash=parent,
                                        token_ids=prompt[start : start + len(new_hashes) * self.block_size],
                                        block_size=self.block_size))
        evicted: list[int] = []
        while len(self._cache) > self._capacity_blocks:
            evicted.append(self._cache.popitem(last=False)[0])
        if evicted:
            events.append(KVBlockRemoved(block_hashes=evicted))
        self._publish(events)
        self._queried_tokens += len(prompt)
        self._hit_tokens += hit_blocks * self.block_size
        return hit_blocks * self.block_size

    def _take_fault(self) -> dict[str, float]:
        if self._fault_file is None or not self._fault_file.exists():
            return {}
        try:
            fault = json.loads(self._fault_file.read_text())
            self._fault_file.unlink()
        except (OSError, ValueError):  # another request took it first, or a half-written file
            return {}
        return {k: float(v) for k, v in fault.items()}

    async def _step(self, fault: dict[str, float], step: int) -> None:
        """One simulated decode step, with the request's injected fault once it is due."""
        if step == fault.get("die_after_tokens"):
            self._dead = True
        if step == fault.get("stall_after_tokens"):
            self._stalled_until = time.monotonic() + fault.get("stall_s", 0.0)
        if self._dead:
            raise EngineDeadError("fake engine died (injected fault)")
        await asyncio.sleep(max(self._token_latency_s, self._stalled_until - time.monotonic()))
        if self._dead:  # died while this stream slept
            raise EngineDeadError("fake engine died (injected fault)")

    async def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        if self._dead:
            raise EngineDeadError("fake engine was shut down")
        fault = self._take_fault()
        prompt = request.prompt_token_ids
        spec = request.sampling
        cached = self._cache_prompt(prompt)
        greedy = spec.temperature == 0
        rng = random.Random(spec.seed if spec.seed is not None else request.request_id)
        generated: list[int] = []
        emitted = 0  # characters of text already sent
        # Like vLLM's `stream_interval`: the first token at once, then groups of `interval`, the last with
        # the finish.
        interval = self._stream_interval
        pending_tokens: list[int] = []
        pending_text = ""
        sent_first = False
        # Like vLLM, hold back text that could still turn out to be the start of a stop string.
        holdback = max((len(s) for s in spec.stop), default=1) - 1
        self._running.add(request.request_id)
        try:
            for step in range(spec.max_tokens):
                if request.request_id in self._aborted:
                    served_finish_reason("abort")  # raises: the engine ended it, as vLLM's abort does
                if step == fault.get("error_after_tokens"):
                    served_finish_reason("error")  # raises: vLLM's retryable request-level error
                await self._step(fault, step)
                token = _middle_token(prompt, generated) if greedy else rng.choice(prompt)
                generated.append(token)
                full_text = self._detokenize(generated)
                stop_at = _first_stop(full_text, spec.stop, emitted)
                if stop_at is not None:
                    text = pending_text + full_text[emitted : stop_at[0]]
                    yield self._chunk(request, [*pending_tokens, token], text, "stop", cached, stop_at[1])
                    return
                last = step == spec.max_tokens - 1
                upto = len(full_text) if last else max(emitted, len(full_text) - holdback)
                pending_tokens.append(token)
                pending_text += full_text[emitted:upto]
                emitted = upto
                if last or not sent_first or len(pending_tokens) >= interval:
                    yield self._chunk(request, pending_tokens, pending_text, "length" if last else None, cached)
                    pending_tokens, pending_text, sent_first = [], "", True
        finally:
            self._running.discard(request.request_id)
            self._aborted.discard(request.request_id)

    @staticmethod
    def _chunk(request: GenerationRequest, tokens: list[int], text: str, finish: str | None, cached: int,
               stop_reason: str | None = None) -> OutputChunk:
        return OutputChunk(request_id=request.request_id, token_ids=tokens, text=text, finish_reason=finish,
                           num_prompt_tokens=len(request.prompt_token_ids), num_cached_prompt_tokens=cached,
                           stop_reason=stop_reason)

    async def abort(self, request_id: str) -> None:
        if request_id in self._running:
            self._aborted.add(request_id)

    async def stats(self) -> EngineStats:
        return EngineStats(
            num_running=len(self._running),
            num_waiting=0,
            kv_cache_usage=len(self._cache) / self._capacity_blocks,
            prefix_cache_hit_rate=self._hit_tokens / self._queried_tokens if self._queried_tokens else None,
            kv_events_endpoint=self.kv_events_endpoint,
        )

    async def check_health(self) -> None:
        if self._dead:
            raise EngineDeadError("fake engine was shut down")

    async def shutdown(self) -> None:
        self._dead = True
        if self._publisher is not None:
            self._publisher.close(linger=0)
            self._publisher = None
        if self._replay is not None:
            self._replay.close()
            self._replay = None


def _middle_token(prompt: list[int], generated: list[int]) -> int:
    middle = (len(prompt) + len(generated)) // 2
    return prompt[middle] if middle < len(prompt) else generated[middle - len(prompt)]


def _first_stop(text: str, stops: list[str], search_from: int) -> tuple[int, str] | None:
    """Earliest stop string in `text` that ends after `search_from`: (its start, the string)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        index = text.find(stop, max(0, search_from - len(stop) + 1))
        if index != -1 and (best is None or index < best[0]):
            best = (index, stop)
    return best
