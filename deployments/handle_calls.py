"""Calling the LLM deployment so that each engine request is its own request to Serve's router.

Serve stamps every handle call made while serving an HTTP request with that request's internal id, so
the n engine requests of one `n > 1` API request would share an id. Serve's request routers match a
routing decision to its pending request by that id, and ours also tracks load per id: with a shared id
all but one call would never be matched (they hang) and the load would be miscounted. Each call is
therefore made in a copy of the request context carrying the engine request's own id.
"""

from __future__ import annotations

import contextvars
from typing import Any

from ray.serve.context import _set_request_context

from engines.types import GenerationRequest


def _remote_with_id(method: Any, request: GenerationRequest) -> Any:
    # Serve reads the context synchronously inside `.remote()`, so the copy only lives for this call.
    _set_request_context(_internal_request_id=request.request_id)
    return method.remote(request)


def call_with_own_request_id(method: Any, request: GenerationRequest) -> Any:
    """`method.remote(request)` (a DeploymentHandle method) with `request.request_id` as Serve's id."""
    return contextvars.copy_context().run(_remote_with_id, method, request)
