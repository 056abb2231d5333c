"""The ingress's security middleware on the real FastAPI app object (in-process ASGI, no Ray)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request

from configs.security_schema import ApiKeyConfig
from deployments.api_keys import resolve_key
from deployments.errors import APIError
from deployments.security_middleware import SecurityMiddleware, api_key_name, process_security

SECRET = "sk-test-0123456789abcdef"
app = FastAPI()
app.add_middleware(SecurityMiddleware)


@app.exception_handler(APIError)
async def _api_error(_: Request, error: APIError):
    return error.response()


@app.post("/v1/echo")
async def echo(request: Request) -> dict[str, object]:
    return {"bytes": len(await request.body()), "key": api_key_name(request.scope)}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/metrics")
async def metrics() -> dict[str, str]:
    return {"metrics": "yes"}


@pytest.fixture
def client() -> Iterator[httpx.AsyncClient]:
    process_security().configure([resolve_key(ApiKeyConfig(name="team-a", key=SECRET, max_concurrent=4))], 2048,
                       metrics_require_key=True)
    yield httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    process_security().configure([], 32 * 1024 * 1024, metrics_require_key=False)


async def _error(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body["error"]) >= {"message", "type", "code"}
    return body["error"]


@pytest.mark.anyio
async def test_keys_guard_api_routes_but_not_health(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/echo", content=b"{}")
    assert missing.status_code == 401 and (await _error(missing))["code"] == "invalid_api_key"
    wrong = await client.post("/v1/echo", content=b"{}", headers={"Authorization": "Bearer " + SECRET + "x"})
    assert wrong.status_code == 401 and SECRET not in wrong.text
    ok = await client.post("/v1/echo", content=b"{}", headers={"Authorization": "Bearer " + SECRET})
    assert ok.status_code == 200 and ok.json() == {"bytes": 2, "key": "team-a"}
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/metrics")).status_code == 401  # metrics_require_key=True here
    assert process_security().limiters["team-a"].in_flight == 0


@pytest.mark.anyio
async def test_bodies_over_the_bound_get_413_declared_or_chunked(client: httpx.AsyncClient) -> None:
    headers = {"Authorization": "Bearer " + SECRET}
    declared = await client.post("/v1/echo", content=b"x" * 4096, headers=headers)
    assert declared.status_code == 413 and "limit is 2048" in (await _error(declared))["message"]

    async def chunks():
        for _ in range(4):
            yield b"x" * 1000

    chunked = await client.post("/v1/echo", content=chunks(), headers=headers)
    assert chunked.status_code == 413 and (await _error(chunked))["code"] == "payload_too_large"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_bodies_in_flight_are_bounded_before_they_are_read() -> None:
    """Two 1,500-byte bodies against 2,048 bytes in flight: the second is refused (503, Retry-After) while
    the first is still being received, and admitted once it is done; nothing stays counted."""
    import asyncio

    process_security().configure([], 2048, metrics_require_key=False, max_body_bytes_in_flight=2048)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
    first_started = asyncio.Event()
    release_first = asyncio.Event()

    async def slow_body():
        yield b"x" * 500
        first_started.set()
        await release_first.wait()
        yield b"x" * 1000

    try:
        first = asyncio.create_task(client.post("/v1/echo", content=slow_body(),
                                                headers={"content-length": "1500"}))
        await first_started.wait()
        busy = await client.post("/v1/echo", content=b"x" * 1500)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "max_body_bytes_in_flight" in (await _error(busy))["message"]
        release_first.set()
        assert (await first).json()["bytes"] == 1500
        assert (await client.post("/v1/echo", content=b"x" * 1500)).status_code == 200
        assert process_security().body_bytes_in_flight == 0
    finally:
        process_security().configure([], 32 * 1024 * 1024, metrics_require_key=False)
