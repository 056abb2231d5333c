"""The one FastAPI app behind the ingress. Route groups (OpenAI in `ingress`, others beside it) register
their routes on it, so the ingress deployment serves every API on one port; errors leave as OpenAI bodies."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from deployments.errors import APIError, internal_error

logger = logging.getLogger("warmserve.ingress")
app = FastAPI(title="warmserve", docs_url=None, redoc_url=None)


@app.exception_handler(APIError)
async def _api_error_handler(_: Request, error: APIError) -> JSONResponse:
    return error.response()


@app.exception_handler(Exception)
async def _unexpected_error_handler(_: Request, error: Exception) -> JSONResponse:
    logger.exception("unhandled error in ingress")
    return internal_error(f"internal error: {type(error).__name__}").response()
