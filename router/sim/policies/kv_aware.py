"""warmserve's production policy in the simulator: the same objects the Serve adapter drives.

`PrefixIndex` fed by the engines' KV events, `RoutedBlocks` for blocks routed but not yet confirmed,
`ReplicaLoadTracker` for load (pending prefill drained by the same KV events, requests in flight topped up
by the engines' scraped running + waiting counts, recent share), `KVAwarePolicy` for the decision, all with
their production defaults (the recent-share weight set for the profile's engine speed, `balance_blocks_for`)
unless a benchmark overrides them. The timed decision covers what the adapter
does per request: build the candidates with their loads, choose, and record the request as started.
"""

from __future__ import annotations

from engines.types import KVEventBatch
from router.kv_policy import (DEFAULT_NEW_PREFIX_SPREAD_BLOCKS, DEFAULT_UNCACHED_BLOCK_WEIGHT, Candidate, KVAwarePolicy,
                              PrefixOwners, RoutedBlocks)
from router.load_tracker import DEFAULT_BALANCE_MEMORY, DEFAULT_REQUEST_BLOCKS, ReplicaLoadTracker
from router.prefix_index import PrefixIndex
from router.sim.policy_api import SimContext, SimPolicy
from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest

# The Serve adapter's default (configs/schema.py RouterConfig.routed_blocks_ttl_s) with KV events on.
ROUTED_TTL_S = 5.0
# ReplicaLoadTracker's balance weight scales with how long a request stays in flight measured in
# prefill-block times: one decode step at the typical batch, in blocks, x this factor (30 on the gpu
# profile, the tracker's default; about 6 on the cpu one, where decode steps are short next to prefill).
BALANCE_STEPS = 1.6


def balance_blocks_for(profile: EngineProfile) -> float:
    """The recent-share weight for a deployment with these engine costs (see `BALANCE_STEPS`)."""
    step_blocks = profile.step_s(0, profile.typical_batch) / (profile.block_size * profile.prefill_token_s)
    return round(BALANCE_STEPS * step_blocks, 1)


class KVAwareSim(SimPolicy):
    name = "kv_aware"

    def __init__(self, context: SimContext, uncached_block_weight: float = DEFAULT_UNCACHED_BLOCK_WEIGHT,
                 request_blocks: float = DEFAULT_REQUEST_BLOCKS, balance_blocks: float | None = None,
                 balance_memory: float = DEFAULT_BALANCE_MEMORY, routed_ttl_s: float = ROUTED_TTL_S,
                 drain_with_events: bool = True,
                 new_prefix_spread_blocks: float = DEFAULT_NEW_PREFIX_SPREAD_BLOCKS) -> None:
        self._drain = drain_with_events  # False: as an adapter that never calls observe_kv_events
        block_size = context.profile.block_size
        self._ids = context.replica_ids
        self._slot = {replica: i for i, replica in enumerate(self._ids)}
        self._block_size = block_size
        self.index = PrefixIndex(block_size)
        self.routed = RoutedBlocks(ttl_s=routed_ttl_s, capacity_blocks=context.profile.kv_capacity_blocks,
                                   clock=context.clock)
        if balance_blocks is None:
            balance_blocks = balance_blocks_for(context.profile)
        self.tracker = ReplicaLoadTracker(block_size, request_blocks=request_blocks,
                                          balance_blocks=balance_blocks, balance_memory=balance_memory)
        self.owners = PrefixOwners()
        self.policy = KVAwarePolicy(self.index, self.routed, uncached_block_weight=uncached_block_weight,
                                    rng=context.rng, owners=self.owners,
                                    new_prefix_spread_blocks=new_prefix_spread_blocks)

    def prepare(self, request: SimRequest) -> object:
        return request.prompt_keys(self._block_size)

    def route(self, prepared: object, request: SimRequest) -> int:
        keys: list[int] = prepared  # type: ignore[assignment]
        load = self.tracker.load_blocks
        decision = self.policy.choose(keys, [Candidate(replica, load(replica)) for replica in self._ids])
        self.tracker.started(request.request_id, decision.replica,
                             decision.prompt_blocks - decision.matched_blocks, request.output_len)
        return self._slot[decision.replica]

    def on_finished(self, request: SimRequest, replica: int) -> None:
        self.tracker.finished(request.request_id)

    def on_kv_events(self, replica: int, batch: KVEventBatch) -> None:
        self.index.apply(self._ids[replica], batch)
        if self._drain:
            self.tracker.observe_kv_events(self._ids[replica], batch)

    def on_engine_stats(self, replica: int, num_running: int, num_waiting: int, kv_usage: float) -> None:
        self.tracker.observe_engine(self._ids[replica], num_running, num_waiting)
