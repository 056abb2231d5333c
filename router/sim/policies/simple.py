"""Load-only baselines: round-robin and power-of-two choices (Ray Serve's default router).

Power of two choices: sample two distinct replicas at random and take the one with fewer requests in
flight from this router (Ray Serve compares the replicas' queue lengths, i.e. ongoing requests).
"""

from __future__ import annotations

from router.sim.policy_api import SimContext, SimPolicy
from router.sim.request import SimRequest


class RoundRobin(SimPolicy):
    name = "round_robin"

    def __init__(self, context: SimContext) -> None:
        self._replicas = len(context.replica_ids)
        self._next = 0

    def route(self, prepared: object, request: SimRequest) -> int:
        chosen = self._next
        self._next = (self._next + 1) % self._replicas
        return chosen


class PowerOfTwo(SimPolicy):
    name = "pow2"

    def __init__(self, context: SimContext) -> None:
        self._rng = context.rng
        self._inflight = [0] * len(context.replica_ids)

    def route(self, prepared: object, request: SimRequest) -> int:
        chosen = pow2_choice(self._inflight, self._rng)
        self._inflight[chosen] += 1
        return chosen

    def on_finished(self, request: SimRequest, replica: int) -> None:
        self._inflight[replica] -= 1


def pow2_choice(queue_lengths: list[int], rng: object, among: list[int] | None = None) -> int:
    """Two random distinct replicas (of `among`, default all), the shorter queue wins, ties at random."""
    pool = among if among is not None else range(len(queue_lengths))
    if len(pool) == 1:
        return pool[0]
    a, b = rng.sample(pool, 2)  # type: ignore[attr-defined]
    if queue_lengths[a] != queue_lengths[b]:
        return a if queue_lengths[a] < queue_lengths[b] else b
    return a  # sample order is already random
