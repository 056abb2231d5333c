"""The event loop: arrivals, engine steps, KV event delivery and stats scrapes, in simulated time.

Events at the same instant are ordered: step ends, then stats scrapes, then arrivals (a replica that
just freed a slot is seen as free). KV events published at a step's end reach the policy `event_delay_s`
later, in publish order, before any decision or scrape at or after that time. The wall time of each
`route` call is measured with `time.perf_counter_ns` (the decision only: `prepare` is outside it).
"""

from __future__ import annotations

import heapq
import random
import time
from collections import deque
from dataclasses import dataclass, field

from engines.types import KVEventBatch
from router.sim.engine import SimEngine
from router.sim.policy_api import PolicyFactory, SimContext
from router.sim.profiles import EngineProfile
from router.sim.request import SimRequest

DEFAULT_STATS_INTERVAL_S = 0.1


@dataclass(slots=True)
class RequestOutcome:
    replica: int
    ttft_s: float = -1.0
    cached_tokens: int = 0
    finished_s: float = -1.0
    finishes: int = 0  # must end at exactly 1


@dataclass(slots=True)
class SimRun:
    requests: list[SimRequest]
    outcomes: list[RequestOutcome]
    decision_ns: list[int]
    replica_busy_s: list[float]
    end_s: float
    max_used_blocks: list[int] = field(default_factory=list)  # per replica: peak slots in use
    events_published: int = 0
    engines: list[SimEngine] = field(default_factory=list)  # their final state (caches), for checks


class _Clock:
    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def simulate(requests: list[SimRequest], policy_factory: PolicyFactory, profile: EngineProfile, replicas: int,
             seed: int = 0, event_delay_s: float = 0.0,
             stats_interval_s: float = DEFAULT_STATS_INTERVAL_S) -> SimRun:
    """Replay `requests` (sorted by arrival, each fitting one replica's KV cache) against one policy.

    Who calls: `bench.run_benchmark` and tests. replicas >= 1; event_delay_s >= 0; stats_interval_s > 0.
    Deterministic for a seed (apart from the measured decision times).
    """
    clock = _Clock()
    replica_ids = [f"r{i}" for i in range(replicas)]
    salt_rng = random.Random(seed ^ 0x5EED)
    engines = [SimEngine(profile, engine_salt=salt_rng.getrandbits(63)) for _ in range(replicas)]
    policy = policy_factory(SimContext(profile=profile, replica_ids=replica_ids, clock=clock,
                                       rng=random.Random(seed)))
    outcomes: list[RequestOutcome] = []
    outcome_of: dict[str, RequestOutcome] = {}
    decision_ns: list[int] = []
    steps: list[tuple[float, int, int]] = []  # (end time, tiebreak, replica)
    tiebreak = 0
    deliveries: deque[tuple[float, int, KVEventBatch]] = deque()
    seqs = [0] * replicas
    max_used = [0] * replicas
    published = 0
    next_stats = 0.0
    index = 0
    total = len(requests)
    inf = float("inf")

    def deliver(until: float) -> None:
        while deliveries and deliveries[0][0] <= until:
            _, replica, batch = deliveries.popleft()
            policy.on_kv_events(replica, batch)

    def start(replica: int, now: float) -> None:
        nonlocal tiebreak
        duration = engines[replica].start_step()
        if duration is not None:
            tiebreak += 1
            heapq.heappush(steps, (now + duration, tiebreak, replica))
        used = engines[replica].cache.used_blocks
        if used > max_used[replica]:
            max_used[replica] = used

    while index < total or steps:
        t_arrival = requests[index].arrival_s if index < total else inf
        t_step = steps[0][0] if steps else inf
        t = min(t_arrival, t_step, next_stats)
        clock.now = t
        if t == t_step:
            _, _, replica = heapq.heappop(steps)
            engine = engines[replica]
            result = engine.finish_step()
            if engine.cache.events:
                batch = KVEventBatch(seq=seqs[replica], timestamp_s=t, events=engine.cache.events)
                engine.cache.events = []
                seqs[replica] += 1
                published += 1
                deliveries.append((t + event_delay_s, replica, batch))
            for seq in result.first_tokens:
                outcome = outcome_of[seq.request.request_id]
                outcome.ttft_s = t - seq.request.arrival_s
                outcome.cached_tokens = seq.cached_tokens
                policy.on_first_token(seq.request, replica)
            for seq in result.finished:
                outcome = outcome_of[seq.request.request_id]
                outcome.finished_s = t
                outcome.finishes += 1
                policy.on_finished(seq.request, replica)
            start(replica, t)
        elif t == next_stats:
            deliver(t)
            for replica, engine in enumerate(engines):
                policy.on_engine_stats(replica, engine.num_running, engine.num_waiting, engine.kv_usage)
            next_stats += stats_interval_s
        else:
            request = requests[index]
            index += 1
            deliver(t)
            prepared = policy.prepare(request)
            began = time.perf_counter_ns()
            replica = policy.route(prepared, request)
            decision_ns.append(time.perf_counter_ns() - began)
            outcome = RequestOutcome(replica=replica)
            outcomes.append(outcome)
            outcome_of[request.request_id] = outcome
            engines[replica].add(request)
            if not engines[replica].busy:
                start(replica, t)
    clock.now += event_delay_s
    deliver(float("inf"))  # the last steps' events still reach the policy, so its view ends complete
    return SimRun(requests=requests, outcomes=outcomes, decision_ns=decision_ns,
                  replica_busy_s=[e.busy_s for e in engines], end_s=clock.now, max_used_blocks=max_used,
                  events_published=published, engines=engines)
