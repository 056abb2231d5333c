"""NVIDIA Dynamo's KV router, from its documentation (router design, routing concepts).

cost(worker) = overlap_score_weight x prefill_blocks + decode_blocks, lowest wins (temperature 0: ties at
random), default overlap_score_weight 1.0:
- prefill_blocks = (prompt tokens the worker is still prefilling for active requests + this request's
  tokens not covered by the worker's cached overlap) / block_size; a request's prefill tokens leave the
  worker's count when its first token arrives;
- decode_blocks = blocks of the worker's active requests (blocks shared by several counted once,
  `assume_kv_reuse`) + this request's prompt blocks not already active there; output blocks are not
  tracked (`track_output_blocks` off by default).
The overlap comes from a prefix index fed by the workers' KV events (here: this package's `PrefixIndex`).
"""

from __future__ import annotations

from collections import Counter

from engines.types import KVEventBatch
from router.prefix_index import PrefixIndex
from router.sim.policy_api import SimContext, SimPolicy
from router.sim.request import SimRequest


class DynamoKV(SimPolicy):
    name = "dynamo"

    def __init__(self, context: SimContext, overlap_score_weight: float = 1.0) -> None:
        self._ids = context.replica_ids
        self._rng = context.rng
        self._bs = context.profile.block_size
        self._weight = overlap_score_weight
        self._index = PrefixIndex(self._bs)
        n = len(self._ids)
        self._prefill_tokens = [0] * n
        self._active: list[Counter[int]] = [Counter() for _ in range(n)]
        self._partial_blocks = [0] * n  # trailing partial prompt blocks of active requests
        self._pending: dict[str, tuple[int, int]] = {}  # request -> (worker, prefill tokens still counted)

    def prepare(self, request: SimRequest) -> object:
        return request.prompt_keys(self._bs)

    def route(self, prepared: object, request: SimRequest) -> int:
        keys: list[int] = prepared  # type: ignore[assignment]
        bs = self._bs
        overlaps = self._index.matched_blocks(keys, self._ids)
        request_blocks = -(-request.prompt_len // bs)
        best = float("inf")
        ties: list[int] = []
        for worker, replica in enumerate(self._ids):
            overlap = overlaps[replica]
            active = self._active[worker]
            shared = 0
            if overlap and active:
                while shared < overlap and keys[shared] in active:
                    shared += 1
            prefill = (self._prefill_tokens[worker] + request.prompt_len - overlap * bs) / bs
            decode = len(active) + self._partial_blocks[worker] + request_blocks - shared
            cost = self._weight * prefill + decode
            if cost < best:
                best, ties = cost, [worker]
            elif cost == best:
                ties.append(worker)
        chosen = ties[0] if len(ties) == 1 else self._rng.choice(ties)
        new_tokens = request.prompt_len - overlaps[self._ids[chosen]] * bs
        self._prefill_tokens[chosen] += new_tokens
        self._pending[request.request_id] = (chosen, new_tokens)
        self._active[chosen].update(keys)
        self._partial_blocks[chosen] += request_blocks - len(keys)
        return chosen

    def on_first_token(self, request: SimRequest, replica: int) -> None:
        worker, tokens = self._pending[request.request_id]
        self._prefill_tokens[worker] -= tokens
        self._pending[request.request_id] = (worker, 0)

    def on_finished(self, request: SimRequest, replica: int) -> None:
        worker, _ = self._pending.pop(request.request_id)
        keys = request.prompt_keys(self._bs)
        self._active[worker].subtract(keys)
        active = self._active[worker]
        for key in keys:
            if active[key] <= 0:
                del active[key]
        self._partial_blocks[worker] -= -(-request.prompt_len // self._bs) - len(keys)

    def on_kv_events(self, replica: int, batch: KVEventBatch) -> None:
        self._index.apply(self._ids[replica], batch)
