"""The API request's server span around an OpenAI route handler (deployments/ingress.py), and the spans and
attributes recorded on it. The tracing model is in `deployments.tracing`."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from deployments.completion_stream import Usage
from deployments.errors import APIError
from deployments.openai_protocol import RequestT, decode_json, parse_request
from deployments.tracing import TRACE_ID_HEADER, end_span
from engines.trace_context import context_from_headers, trace_id_of, tracer

# Bodies above this size are decoded and validated on a worker thread: a multi-megabyte JSON body takes
# tens of milliseconds to parse, which the event loop (routing, streaming, /health) must not wait on. Below
# it the thread hop would cost more than the parse.
PARSE_ON_LOOP_MAX_BYTES = 64 * 1024


async def traced_request(request: Request, route: str, handler: Callable[[Request], Awaitable[Response]]) -> Response:
    """Run `handler` inside the request's server span (parented on the client's `traceparent`) and return
    the trace id in `x-trace-id`. A streamed response's span is ended by its stream (`Ingress._sse`)."""
    span = tracer().start_span(f"POST {route}", context=context_from_headers(request.headers),
                               kind=SpanKind.SERVER, attributes={"http.route": route})
    try:
        with trace.use_span(span, end_on_exit=False):
            response = await handler(request)
    except APIError as error:
        end_span(span, error.status_code)
        raise
    except BaseException as error:
        end_span(span, 500, type(error).__name__)
        raise
    trace_id = trace_id_of(span)
    if trace_id is not None:
        response.headers[TRACE_ID_HEADER] = trace_id
    if not isinstance(response, StreamingResponse):
        end_span(span, response.status_code)
    return response


async def parse_traced(request: Request, model: type[RequestT]) -> RequestT:
    """The body read and validated, as a span of the request's trace (a 4xx is not a server error)."""
    with tracer().start_as_current_span("ingress.parse", record_exception=False, set_status_on_exception=False):
        raw = await request.body()
        if len(raw) <= PARSE_ON_LOOP_MAX_BYTES:
            return parse_request(model, decode_json(raw))
        return await asyncio.to_thread(lambda: parse_request(model, decode_json(raw)))


def record_usage(span: Span, usage: Usage) -> None:
    span.set_attributes({"gen_ai.usage.input_tokens": usage.prompt_tokens,
                         "gen_ai.usage.output_tokens": usage.completion_tokens,
                         "warmserve.cached_tokens": usage.cached_tokens})
