"""Answer a request for a versioned model's bare name, falling back to another version when its own fails.

A request for the bare name (`chat`, split across `chat@v1` and `chat@v2`) did not ask for a version, so
when the one the split chose fails before answering (a server error: the engine failed the request, every
replica was unavailable, the version is at capacity), the request is answered by another version with
traffic instead, once. The client sees the old version's answer, not the canary's error; the failure is
still counted for the failed version (`warmserve_generations_total{outcome="error"}`, plus
`warmserve_version_fallbacks_total`), so a rollout sees it and rolls the canary back.

Not retried on another version: requests that named or pinned a version (they asked for that one), client
errors (4xx, the request itself is wrong), timeouts (504: the time is spent), and streams that had begun (a
stream's failure after its first token is reported in-band; another model cannot continue its text).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi.responses import Response

from configs.model_versions import split_version
from deployments.errors import APIError
from deployments.metrics import ingress_metrics
from deployments.model_resolver import ModelResolver

logger = logging.getLogger("warmserve.ingress")
FALLBACK_HEADER = "x-warmserve-fallback-from"  # in responses: the version that failed before this answer
FALLBACK_STATUSES = frozenset({500, 502, 503})

Served = TypeVar("Served")


async def answer_with_fallback(resolver: ModelResolver[Served], name: str, pinned_version: str | None,
                               session: str | None, answer: Callable[[Served], Awaitable[Response]]) -> Response:
    """`answer(served)` on the model `name` resolves to; on a server error from a version the split chose,
    `answer` once more on another version of the split. Raises what the last attempt raised."""
    served_name, served = resolver.resolve(name, pinned_version, session)
    try:
        return await answer(served)
    except APIError as error:
        alternative = None
        if not pinned_version and error.status_code in FALLBACK_STATUSES:
            alternative = resolver.fallback(name, served_name, session)
        if alternative is None:
            raise
        logger.warning("%s failed (%d: %s); answering from %s instead", served_name, error.status_code,
                       error.message, alternative[0])
    ingress_metrics().version_fallbacks.labels(served_name).inc()
    response = await answer(alternative[1])
    response.headers[FALLBACK_HEADER] = split_version(served_name)[1] or served_name
    return response
