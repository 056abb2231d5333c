"""The arrival check: places against the capacity still free, taken before admission and given back after."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from configs.reliability_schema import AdmissionConfig
from deployments.admission import AdmissionGate
from deployments.arrival_gate import ArrivalGate, ArrivalMiddleware, settle_arrival


def test_places_count_admitted_and_arriving_requests_across_models() -> None:
    a, b = (AdmissionGate(AdmissionConfig(max_inflight=2), name) for name in ("a", "b"))
    gate = ArrivalGate([a, b])
    arrivals = [gate.arrive() for _ in range(4)]
    assert all(arrivals) and gate.arrive() is None  # 4 free slots, 4 arriving
    a.admit(None, 1)
    arrivals[0].settle()
    arrivals[0].settle()  # idempotent
    assert gate.pending == 3 and gate.arrive() is None  # the admitted one still holds its slot
    arrivals[1].settle()  # refused by its model, say: its place is free again
    assert gate.arrive() is not None


def test_a_burst_beyond_capacity_is_refused_before_any_body_is_read() -> None:
    model = AdmissionGate(AdmissionConfig(max_inflight=3, retry_after_s=2), "m")
    app = FastAPI()
    app.add_middleware(ArrivalMiddleware)
    app.state.arrivals = ArrivalGate([model])
    bodies_read = 0
    release = asyncio.Event()

    @app.post("/v1/chat/completions")
    async def chat(request: dict) -> dict:  # the body is read (and parsed) only past the check
        nonlocal bodies_read
        bodies_read += 1
        await release.wait()
        return {"ok": True}

    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            tasks = [asyncio.create_task(client.post("/v1/chat/completions", json={"i": i})) for i in range(8)]
            await asyncio.sleep(0.2)
            release.set()
            return await asyncio.gather(*tasks)

    replies = asyncio.run(main())
    statuses = sorted(r.status_code for r in replies)
    assert statuses == [200] * 3 + [503] * 5 and bodies_read == 3
    refused = next(r for r in replies if r.status_code == 503)
    assert refused.headers["retry-after"] == "2" and refused.json()["error"]["code"] == "service_unavailable"
    assert app.state.arrivals.pending == 0  # every place given back when its request ended


def test_settling_without_an_arrival_is_harmless() -> None:
    settle_arrival({"type": "http"})
