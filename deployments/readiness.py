"""`/ready` from state already held: the replica states Serve's controller reports, polled off the request
path.

Asking each model's replicas at probe time (a `stats` call through the handle) queued the probe behind
the requests the replicas were busy with, so a busy, healthy cluster answered 503 and a load balancer or
Kubernetes would take it out of service. Here `/ready` answers from the last answer of Serve's
controller, in microseconds however loaded the replicas are, and when that answer is older than
`poll_s` it asks the controller again in the background (in a thread: the call blocks). Nothing is
asked while nobody probes, so the controller is not loaded by ingresses no one checks. A failed call
keeps the last answer: the controller being slow says nothing about whether requests are being served.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger("warmserve.ingress")
POLL_S = 2.0
FIRST_ANSWER_WAIT_S = 5.0

# (app, deployment) -> replicas per state name (RUNNING, STARTING, ...), for the deployments that exist.
ReplicaStates = dict[tuple[str, str], dict[str, int]]


@dataclass(frozen=True, slots=True)
class Watched:
    model: str
    app: str
    deployment: str


def serve_replica_states() -> ReplicaStates:
    """What Serve's controller reports now (a blocking call to the controller)."""
    from ray import serve

    states: ReplicaStates = {}
    for app_name, app in serve.status().applications.items():
        for name, deployment in app.deployments.items():
            states[(app_name, name)] = {getattr(s, "value", str(s)): n for s, n in deployment.replica_states.items()}
    return states


class ReadinessWatch:
    def __init__(self, watched: list[Watched], fetch: Callable[[], ReplicaStates] = serve_replica_states,
                 poll_s: float = POLL_S) -> None:
        self._watched = watched
        self._fetch = fetch
        self._poll_s = poll_s
        self._missing: list[str] | None = None  # None until the first answer
        self._answered_at = float("-inf")
        self._first_answer = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def missing(self) -> list[str]:
        """Models without a running replica, with what Serve says of them; empty when all are ready.
        The first call waits (briefly) for the controller's first answer."""
        stale = time.monotonic() - self._answered_at > self._poll_s
        if stale and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._refresh())
        if self._missing is None:
            try:
                await asyncio.wait_for(self._first_answer.wait(), FIRST_ANSWER_WAIT_S)
            except TimeoutError:
                return ["replica states not known yet (Serve's controller has not answered)"]
        return list(self._missing or [])

    async def _refresh(self) -> None:
        try:
            states = await asyncio.to_thread(self._fetch)
            self._missing = self._judge(states)
            self._answered_at = time.monotonic()
            self._first_answer.set()
        except Exception as error:  # keep the last answer; say why there is no new one
            logger.warning("readiness: Serve's replica states unavailable (%s: %s); keeping the last answer",
                           type(error).__name__, error)

    def _judge(self, states: ReplicaStates) -> list[str]:
        missing = []
        for watched in self._watched:
            replicas = states.get((watched.app, watched.deployment))
            if replicas is None:
                missing.append(f"{watched.model}: deployment {watched.deployment} not found")
            elif replicas.get("RUNNING", 0) < 1:
                states_text = ", ".join(f"{n} {state}" for state, n in sorted(replicas.items())) or "no replicas"
                missing.append(f"{watched.model}: no running replica ({states_text})")
        return missing
