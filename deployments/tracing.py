"""OpenTelemetry tracing: one trace per API request, across the ingress, the router and the LLM replica.

The ingress opens the request's span from the client's W3C `traceparent` (if any) and returns the trace
id in `x-trace-id`. Each engine attempt gets a child span whose context travels inside the
`GenerationRequest` (`trace_context`), so the router (in the ingress process) and the replica (another
process, maybe another node) parent their spans on it. Without an `otlp_endpoint` the SDK is never
installed: OpenTelemetry's API then hands out non-recording spans, which cost next to nothing.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.trace import Span

from configs.observability_schema import TracingConfig

TRACE_ID_HEADER = "x-trace-id"


def configure_tracing(config: TracingConfig, component: str, exporter: object | None = None) -> bool:
    """Install the SDK's tracer provider in this process (once; later calls keep the first). `exporter`
    replaces the OTLP exporter (tests pass an in-memory one). Returns whether spans are now recorded."""
    from opentelemetry.sdk.trace import TracerProvider

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    if config.otlp_endpoint is None and exporter is None:
        return False
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=config.otlp_endpoint)
    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name, "warmserve.component": component}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(exporter,  # type: ignore[arg-type]
                                                   schedule_delay_millis=int(config.export_delay_s * 1000)))
    trace.set_tracer_provider(provider)
    return True


def end_span(span: Span, status_code: int, error: str | None = None) -> None:
    """End a request's span with its HTTP status; 5xx and broken streams mark the span as failed."""
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500 or error is not None:
        span.set_status(Status(StatusCode.ERROR, error or f"HTTP {status_code}"))
    span.end()
