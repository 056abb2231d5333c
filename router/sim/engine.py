"""A replica's engine as a step machine: continuous batching with chunked prefill, vLLM V1 style.

Each step runs every decoding request (one token each) plus prefill chunks, oldest first, up to the token
budget; waiting requests are admitted first-come first-served while a sequence slot and KV blocks are
free (head-of-line blocking, as vLLM's scheduler). The step's duration comes from the profile's cost
model; its effects (prefill progress, first tokens, finished requests, KV events) land at its end.
Decoding requests are kept in a heap by the step they finish on, so a step costs O(log n) per request
that changes phase, not O(batch).
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

from router.sim.kv_cache import CachedSeq, SimKVCache
from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest


@dataclass(slots=True)
class Seq:
    request: SimRequest
    cache: CachedSeq
    total_blocks: int  # blocks reserved for prompt + output
    prompt_blocks: int
    output_blocks: int  # full blocks of prompt + output
    computed: int = 0  # prompt tokens computed or cached
    cached_tokens: int = -1  # prompt tokens served from cache, set at admission
    chunk: int = 0  # prompt tokens scheduled in the current step


@dataclass(slots=True)
class StepResult:
    first_tokens: list[Seq]
    finished: list[Seq]


class SimEngine:
    """Who calls: the simulator. Requests must fit the cache (`fits`) before `add`."""

    def __init__(self, profile: EngineProfile, engine_salt: int) -> None:
        self.profile = profile
        self.cache = SimKVCache(profile.kv_capacity_blocks, profile.block_size, engine_salt)
        self._waiting: deque[Seq] = deque()
        self._prefilling: deque[Seq] = deque()
        self._decoding: list[tuple[int, int, Seq]] = []  # (finishing step, tiebreak, seq)
        self._batch: list[Seq] = []
        self._steps = 0
        self._pushes = 0
        self.busy = False  # a step is in progress
        self.busy_s = 0.0

    def fits(self, request: SimRequest) -> bool:
        return self._blocks_for(request) <= self.profile.kv_capacity_blocks

    def _blocks_for(self, request: SimRequest) -> int:
        return -(-(request.prompt_len + request.output_len) // self.profile.block_size)

    def add(self, request: SimRequest) -> None:
        size = self.profile.block_size
        seq = Seq(request=request, cache=CachedSeq(keys=request.keys, tokens=request.source.tokens()),
                  total_blocks=self._blocks_for(request), prompt_blocks=request.prompt_len // size,
                  output_blocks=(request.prompt_len + request.output_len) // size)
        self._waiting.append(seq)

    @property
    def num_running(self) -> int:
        return len(self._decoding) + len(self._prefilling)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_usage(self) -> float:
        return self.cache.active_blocks / self.cache.capacity_blocks

    def start_step(self) -> float | None:
        """Schedule the next step; its duration in seconds, or None when there is nothing to run."""
        profile = self.profile
        decodes = len(self._decoding)
        budget = profile.token_budget - decodes
        batch: list[Seq] = []
        prefill_tokens = 0
        for seq in self._prefilling:
            if budget <= 0:
                break
            seq.chunk = min(seq.request.prompt_len - seq.computed, budget)
            budget -= seq.chunk
            prefill_tokens += seq.chunk
            batch.append(seq)
        waiting = self._waiting
        while waiting and budget > 0 and decodes + len(self._prefilling) < profile.max_num_seqs:
            seq = waiting[0]
            cached = self.cache.admit(seq.cache, seq.request.prompt_len, seq.total_blocks)
            if cached is None:
                break  # not enough KV blocks until running requests finish
            waiting.popleft()
            seq.cached_tokens = cached
            seq.computed = cached
            self._prefilling.append(seq)
            seq.chunk = min(seq.request.prompt_len - seq.computed, budget)
            budget -= seq.chunk
            prefill_tokens += seq.chunk
            batch.append(seq)
        if not decodes and not batch:
            self.busy = False
            return None
        self._batch = batch
        self.busy = True
        duration = profile.step_s(prefill_tokens, decodes)
        self.busy_s += duration
        return duration

    def finish_step(self) -> StepResult:
        """Apply the step that just ended."""
        self._steps += 1
        steps = self._steps
        size = self.profile.block_size
        result = StepResult(first_tokens=[], finished=[])
        for seq in self._batch:
            seq.computed += seq.chunk
            seq.chunk = 0
            done_blocks = min(seq.computed // size, seq.prompt_blocks)
            if done_blocks > seq.cache.stored_blocks:
                self.cache.store_up_to(seq.cache, done_blocks)
            if seq.computed >= seq.request.prompt_len:
                # Completions are the oldest prefilling requests (they got their chunks first).
                if self._prefilling[0] is seq:
                    self._prefilling.popleft()
                else:
                    self._prefilling.remove(seq)
                result.first_tokens.append(seq)
                if seq.request.output_len <= 1:
                    self._finish(seq, result)
                else:
                    self._pushes += 1
                    heapq.heappush(self._decoding, (steps + seq.request.output_len - 1, self._pushes, seq))
        self._batch = []
        decoding = self._decoding
        while decoding and decoding[0][0] <= steps:
            self._finish(heapq.heappop(decoding)[2], result)
        return result

    def _finish(self, seq: Seq, result: StepResult) -> None:
        # Output blocks are hashed like prompt blocks (vLLM caches full decode blocks too), so a next turn
        # that resends this answer finds it.
        if seq.output_blocks > seq.cache.stored_blocks:
            self.cache.store_up_to(seq.cache, seq.output_blocks)
        self.cache.release(seq.cache)
        result.finished.append(seq)
