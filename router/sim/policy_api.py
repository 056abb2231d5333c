"""What a simulated routing policy sees and does: the interface between the simulator and the policies.

A policy gets what its real counterpart gets: the request (token ids and block keys, or text, computed in
`prepare`, outside the timed decision, as tokenization is outside it in production), its own bookkeeping
of what it routed, KV events from the engines (after the configured delay) if it uses them, and the
engines' periodic stats (running, waiting, KV usage) if it scrapes them.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from engines.types import KVEventBatch
from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest


@dataclass(slots=True)
class SimContext:
    """Given to every policy factory. `clock` is the simulated time in seconds."""

    profile: EngineProfile
    replica_ids: list[str]
    clock: Callable[[], float]
    rng: random.Random


class SimPolicy:
    """Base class: route() is required, the notifications default to doing nothing.

    Replicas are addressed by index into `SimContext.replica_ids`.
    """

    name = "?"

    def prepare(self, request: SimRequest) -> object:
        """Untimed per-request preparation (tokenization / text rendering in the real system)."""
        return request

    def route(self, prepared: object, request: SimRequest) -> int:
        raise NotImplementedError

    def on_first_token(self, request: SimRequest, replica: int) -> None:
        pass

    def on_finished(self, request: SimRequest, replica: int) -> None:
        pass

    def on_kv_events(self, replica: int, batch: KVEventBatch) -> None:
        pass

    def on_engine_stats(self, replica: int, num_running: int, num_waiting: int, kv_usage: float) -> None:
        pass


PolicyFactory = Callable[[SimContext], SimPolicy]
