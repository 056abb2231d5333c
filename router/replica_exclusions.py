"""Replicas kept out of routing after a call to them failed, until they prove healthy or time runs out.

The ingress learns of a failure first (a stream broke, an engine reported itself dead, a stream
stalled); Serve's own routing state learns late (the controller's health check, seconds later) or never
(a live replica whose engine died). The ingress and its routers share a process, so a process-wide
registry lets the ingress exclude a replica *the moment* a call to it fails and every router of that
deployment skip it on its next decision. A replica comes back when its routing stats, reported after
the exclusion, say its engine is healthy, or when `exclude_s` has passed.

The routers also record where each request went, so the ingress can move a request still waiting for its
first token off a replica excluded meanwhile (another stream there stalled or broke): without this it
would wait out `first_token_timeout_s` in a wedged engine's queue.

Pure Python, clock injectable; safe to call from the ingress's loop and a router's loop (dict operations
under the GIL, no awaits).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]
# Placements of requests in flight are forgotten when they complete; the bound only caps what requests the
# routers never saw complete (a replica that vanished mid-request) can leave behind.
MAX_TRACKED_PLACEMENTS = 65_536


@dataclass(slots=True)
class _Exclusion:
    until: float  # monotonic: the exclusion's hard end
    excluded_at: float  # monotonic: when (placements made before it are left behind)
    excluded_at_wall: float  # wall clock, comparable with the replica's own report times


class ReplicaExclusions:
    def __init__(self, clock: Clock = time.monotonic, wall_clock: Clock = time.time) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._excluded: dict[tuple[str, str], _Exclusion] = {}
        # (deployment, request id) -> (replica, monotonic time it was placed there)
        self._placements: OrderedDict[tuple[str, str], tuple[str, float]] = OrderedDict()

    def exclude(self, deployment: str, replica: str, for_s: float) -> None:
        now = self._clock()
        self._excluded[(deployment, replica)] = _Exclusion(now + for_s, now, self._wall_clock())

    def observe_stats(self, deployment: str, replica: str, reported_at: float | None, engine_healthy: bool) -> None:
        """A router saw the replica's routing stats: a healthy report *made* after the exclusion lifts it
        (one made before, delivered late, says nothing about the failure). Clock skew between nodes only
        delays this; `exclude_s` still ends it."""
        exclusion = self._excluded.get((deployment, replica))
        if exclusion is None or not engine_healthy or reported_at is None:
            return
        if reported_at > exclusion.excluded_at_wall:
            del self._excluded[(deployment, replica)]

    def is_excluded(self, deployment: str, replica: str) -> bool:
        exclusion = self._excluded.get((deployment, replica))
        if exclusion is None:
            return False
        if self._clock() >= exclusion.until:
            del self._excluded[(deployment, replica)]
            return False
        return True

    def forget(self, deployment: str, replica: str) -> None:
        """The replica is gone for good (Serve removed it)."""
        self._excluded.pop((deployment, replica), None)

    def excluded(self, deployment: str) -> list[str]:
        return sorted(r for (d, r) in list(self._excluded) if d == deployment and self.is_excluded(d, r))

    def placed(self, deployment: str, request_id: str, replica: str) -> None:
        """A router sent the request (by its engine request id) to the replica."""
        self._placements[(deployment, request_id)] = (replica, self._clock())
        while len(self._placements) > MAX_TRACKED_PLACEMENTS:
            self._placements.popitem(last=False)

    def completed(self, deployment: str, request_id: str) -> None:
        self._placements.pop((deployment, request_id), None)

    def left_behind(self, deployment: str, request_id: str) -> str | None:
        """The replica the request was sent to when that replica has been excluded *since*, else None. A
        request placed on an already excluded replica (every replica was, so routing took a suspect one)
        stays: moving it would only bounce it between suspects until its attempts run out."""
        placement = self._placements.get((deployment, request_id))
        if placement is None:
            return None
        replica, placed_at = placement
        exclusion = self._excluded.get((deployment, replica))
        if exclusion is None or exclusion.excluded_at < placed_at or not self.is_excluded(deployment, replica):
            return None
        return replica


def deployment_key(app_name: str, deployment_name: str) -> str:
    """How the ingress (from its handle) and a router (from its deployment id) name the same deployment."""
    return f"{app_name}#{deployment_name}"


_PROCESS_EXCLUSIONS = ReplicaExclusions()


def process_exclusions() -> ReplicaExclusions:
    """The process's registry: the ingress writes it, the request routers of the same process read it.

    Looked up through the module at call time, never captured: Serve ships a router class to the
    handle's process by value (cloudpickle), and a captured global would arrive as a private copy.
    """
    import router.replica_exclusions as registry_module

    return registry_module._PROCESS_EXCLUSIONS
