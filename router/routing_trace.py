"""The routing decision as a span of the request's trace: which replica, how much of the prompt it had
cached, and every candidate's cost, so a slow request's trace shows why it went where it went."""

from __future__ import annotations

from engines.trace_context import context_from_carrier, tracer
from engines.types import GenerationRequest
from router.kv_policy import Decision


def record_routing_span(request: GenerationRequest, policy: str, decision: Decision, started_ns: int) -> None:
    parent = context_from_carrier(request.trace_context)
    if parent is None:  # untraced request
        return
    span = tracer().start_span("router.choose_replica", context=parent, start_time=started_ns)
    attributes: dict[str, str | int | float | list[str]] = {
        "warmserve.router.policy": policy,
        "warmserve.router.replica": decision.replica,
        "warmserve.router.matched_blocks": decision.matched_blocks,
        "warmserve.router.prompt_blocks": decision.prompt_blocks,
        "warmserve.router.candidates": sorted(decision.costs),
    }
    # One attribute per candidate: bounded by the replica count, and readable in any trace viewer.
    for replica, cost in decision.costs.items():
        attributes[f"warmserve.router.cost.{replica}"] = float(cost)
    span.set_attributes(attributes)
    span.end()
