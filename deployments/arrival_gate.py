"""Refusing at once in a burst: a cheap capacity check at each LLM request's arrival, before its expensive part.

Admission proper (deployments/admission.py) needs the parsed body (which model, `n`, which client), and
the ingress reaches it only after the request's turn on the event loop. When hundreds of requests arrive
together, every admitted one's parsing, templating and routing runs before a later arrival's turn: 700
chat requests at once against a 512 bound on a 2-core x86 CPU VM had their 503s sent 6-7 s after they
arrived. So each arriving LLM request first takes a place against the capacity still free across the
served models (free slots minus requests already arrived and not yet admitted); the request that finds
none is refused on the spot, without its body being read. A request that finds a place yields the event
loop once before going on, so every request of a burst gets its check before any of them does expensive
work. The gate stays the authority: a request that passes here may still be refused by its own model's
bound (another model had the free slots, or `n` needs more).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from deployments.admission import AdmissionGate
from deployments.errors import protocol_response, service_unavailable
from deployments.security_middleware import route_path

LLM_ROUTES = frozenset({"/v1/chat/completions", "/v1/completions"})
SCOPE_KEY = "warmserve.arrival"


@dataclass(slots=True)
class Arrival:
    """One request's place between its arrival and its model's admission; `settle` is idempotent."""

    gate: ArrivalGate
    settled: bool = False

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.gate.pending -= 1


@dataclass(slots=True)
class ArrivalGate:
    gates: list[AdmissionGate] = field(default_factory=list)
    pending: int = 0  # arrived, not yet admitted or refused by their model's gate

    def arrive(self) -> Arrival | None:
        free = sum(g.config.max_inflight - g.in_flight for g in self.gates)
        if free - self.pending <= 0:
            return None
        self.pending += 1
        return Arrival(self)

    def refusal_response(self, path: str) -> JSONResponse:
        capacity = sum(g.config.max_inflight for g in self.gates)
        error = service_unavailable(f"every model is at capacity ({capacity} requests in flight or arriving); "
                                    "retry later", retry_after_s=min(g.config.retry_after_s for g in self.gates))
        return protocol_response(error, path)


def settle_arrival(scope: Scope) -> None:
    """Called by the ingress once the request's model has admitted or refused it."""
    arrival = scope.get(SCOPE_KEY)
    if arrival is not None:
        arrival.settle()


class ArrivalMiddleware:
    """Pure ASGI: the check runs before the body is read or anything is parsed. The gate lives on the app's
    state (`app.state.arrivals`, set by the ingress at start); without one, requests pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate: ArrivalGate | None = None
        if scope["type"] == "http" and scope.get("method") == "POST":
            path = route_path(scope)
            if path in LLM_ROUTES and "app" in scope:
                gate = getattr(scope["app"].state, "arrivals", None)
        if gate is None or not gate.gates:
            await self.app(scope, receive, send)
            return
        arrival = gate.arrive()
        if arrival is None:
            await gate.refusal_response(path)(scope, receive, send)
            return
        scope[SCOPE_KEY] = arrival
        try:
            await asyncio.sleep(0)  # the other arrivals of a burst take their check before this goes on
            await self.app(scope, receive, send)
        finally:
            arrival.settle()
