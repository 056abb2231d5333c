"""Counts every response the ingress gives on `/v1` and `/v2` routes, by route template and status.

Pure ASGI (not Starlette's BaseHTTPMiddleware), so streamed bodies pass through untouched; registered
outermost, so the security middleware's 401/413/429 answers are counted too. The route label is the
matched route's template (`/v2/models/{name}/infer`, never the raw path, to bound the series), or
`unmatched`; the method label is one of the standard methods or `other`. It also notes when the request arrived, for the TTFT and E2E histograms
(`deployments.metrics.observed_generation`).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from deployments.metrics import CLIENT_CLOSED_STATUS, UNMATCHED_ROUTE, arrival_var, ingress_metrics
from deployments.security_middleware import API_PREFIXES, ASGIApp, Message, Receive, Scope, Send, route_path


# The methods an HTTP client may legitimately send; any other token a client makes up is counted as
# `other`, so an unauthenticated client cannot create a new series per request.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else OTHER_METHOD


def is_counted(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in API_PREFIXES)


def route_template(scope: Scope) -> str:
    """The template of the route that served (or would have served) the request.

    Starlette's router puts the matched route in the scope; a request answered before routing (by the
    security middleware) is matched here against the app's routes, which only such requests pay for.
    """
    route: Any = scope.get("route")
    if route is None:
        from starlette.routing import Match

        app = scope.get("app")
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_counted(route_path(scope)):
            await self.app(scope, receive, send)
            return
        arrival = arrival_var()
        token = arrival.set(time.monotonic())
        status: int | None = None

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        except asyncio.CancelledError:
            if status is None:  # the client went away (Serve cancels the request) before any answer
                status = CLIENT_CLOSED_STATUS
            raise
        except BaseException:
            if status is None:  # Starlette's outermost handler answers an unhandled error with a 500
                status = 500
            raise
        finally:
            arrival.reset(token)
            ingress_metrics().record_response(route_template(scope), method_label(scope.get("method", "")),
                                              status or 500)
