"""W3C trace context for requests that cross processes (OpenTelemetry API only; the SDK is installed, or
not, by `deployments.tracing`). A `GenerationRequest` carries its attempt span's context as a small dict,
so the router and the replica parent their spans on it."""

from __future__ import annotations

from collections.abc import Mapping

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "warmserve"
_PROPAGATOR = TraceContextTextMapPropagator()


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


def context_from_headers(headers: Mapping[str, str]) -> otel_context.Context:
    """The client's trace context from `traceparent`/`tracestate`; an empty context when absent or invalid."""
    return _PROPAGATOR.extract(carrier=dict(headers.items()))


def carrier_of(span: Span) -> dict[str, str] | None:
    """`span`'s context as W3C headers, for a request that crosses processes; None without a valid trace."""
    if not span.get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier


def context_from_carrier(carrier: Mapping[str, str] | None) -> otel_context.Context | None:
    return None if not carrier else _PROPAGATOR.extract(carrier=dict(carrier))


def trace_id_of(span: Span) -> str | None:
    """The trace id as 32 hex digits, as in `traceparent`; None when there is no valid trace."""
    span_context = span.get_span_context()
    return format(span_context.trace_id, "032x") if span_context.is_valid else None
