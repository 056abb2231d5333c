"""`GET /metrics` on the one ingress app: this process's Prometheus registry (`deployments/metrics.py`).

`MetricsRoutes` is a mixin of `deployments.ingress.Ingress`, like `VisionRoutes`. The route is open like
`/health` unless `security.metrics_require_key` (the security middleware decides). Requests are counted
by `MetricsMiddleware`, which `deployments.http_app` registers outermost.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from deployments import openapi_docs as docs
from deployments.http_app import app
from deployments.metrics import exposition

METRICS_RESPONSES = {
    200: {"description": "This ingress process's metrics in the Prometheus text exposition format "
                         "(OpenMetrics when the Accept header asks for it)",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
    **docs.openai_errors(401),
}


class MetricsRoutes:
    """The scrape endpoint; stateless (the registry is the process's)."""

    @app.get("/metrics", response_class=Response, responses=METRICS_RESPONSES)
    async def metrics(self, request: Request) -> Response:
        body, content_type = exposition(request.headers.get("accept"))
        return Response(body, media_type=content_type)
