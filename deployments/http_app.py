"""The one FastAPI app behind the ingress. Route groups (OpenAI in `ingress`, others beside it) register
their routes on it, so the ingress deployment serves every API on one port; errors leave as OpenAI bodies
(KServe's `{"error": "..."}` under `/v2`), FastAPI's and Starlette's own 404/405/validation errors included.
`/openapi.json` documents every route (`deployments.openapi_docs`)."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deployments.arrival_gate import ArrivalMiddleware
from deployments.errors import APIError, internal_error, protocol_response
from deployments.openai_protocol import validation_error
from deployments.openapi_docs import install_openapi
from deployments.metrics_middleware import MetricsMiddleware
from deployments.security_middleware import SecurityMiddleware, route_path

logger = logging.getLogger("warmserve.ingress")
app = FastAPI(title="warmserve", docs_url=None, redoc_url=None)
# Middleware added first runs innermost. Refuses LLM requests beyond every model's capacity at arrival,
# before the body is read (configured by the ingress at start through `app.state.arrivals`); after the
# key check, so requests without a valid key never take a place.
app.add_middleware(ArrivalMiddleware)
# Body bound, API keys and per-key limits, before any route runs (configured by the ingress at start).
app.add_middleware(SecurityMiddleware)
# Added last, so it runs outermost and counts the security middleware's refusals too.
app.add_middleware(MetricsMiddleware)
install_openapi(app)

_HTTP_ERROR_CODES = {404: "not_found", 405: "method_not_allowed"}
# FastAPI's error locations start with where the value came from; the field's name is what users know.
_PARAM_SOURCES = {("path",), ("query",), ("header",), ("cookie",), ("body",)}


def _error_response(request: Request, error: APIError) -> JSONResponse:
    return protocol_response(error, route_path(request.scope))


@app.exception_handler(APIError)
async def _api_error_handler(request: Request, error: APIError) -> JSONResponse:
    return _error_response(request, error)


@app.exception_handler(StarletteHTTPException)
async def _http_error_handler(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """Starlette's routing errors (no route: 404, wrong method: 405) and any HTTPException raised."""
    method, path = request.method, request.url.path
    if error.status_code == 404:
        message = f"Invalid URL ({method} {path})"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"Method {method} is not allowed for {path}" + (f"; allowed: {allowed}" if allowed else "")
    else:
        message = str(error.detail)
    kind = "invalid_request_error" if error.status_code < 500 else "internal_error"
    api_error = APIError(error.status_code, message, type=kind, code=_HTTP_ERROR_CODES.get(error.status_code))
    response = _error_response(request, api_error)
    for name, value in (error.headers or {}).items():  # e.g. a 405's Allow
        response.headers[name] = value
    return response


@app.exception_handler(RequestValidationError)
async def _validation_error_handler(request: Request, error: RequestValidationError) -> JSONResponse:
    """A declared parameter FastAPI validates (a path or query parameter) is invalid: 400, not FastAPI's 422."""
    errors = [{**e, "loc": tuple(e.get("loc", ()))[1:]} if tuple(e.get("loc", ()))[:1] in _PARAM_SOURCES else e
              for e in error.errors()]
    return _error_response(request, validation_error(errors))


@app.exception_handler(Exception)
async def _unexpected_error_handler(request: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress")
    return _error_response(request, internal_error(f"internal error: {type(error).__name__}"))
