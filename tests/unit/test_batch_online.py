"""Online mode against a fake endpoint under the real httpx client: bounded concurrency, 429/503 with
Retry-After, backoff, and what ends up in the output when retries run out."""

from __future__ import annotations

import asyncio
from email.utils import formatdate

import httpx
import pytest

from cluster.batch_backoff import BackoffPolicy, parse_retry_after
from cluster.batch_input import BatchLine
from cluster.batch_online import EndpointAuthError, OnlineSettings, run_online, send_with_retries


def _line(i: int) -> BatchLine:
    return BatchLine(i + 1, f"id{i}", "/v1/completions",
                     {"model": "m", "prompt": "x", "stream": True, "stream_options": {"include_usage": True}})


def test_retry_after_seconds_and_http_dates() -> None:
    assert parse_retry_after("3", 0) == 3.0
    assert parse_retry_after(None, 0) is None and parse_retry_after("soon", 0) is None
    assert parse_retry_after(formatdate(1000.0, usegmt=True), 990.0) == pytest.approx(10.0)
    assert parse_retry_after(formatdate(1000.0, usegmt=True), 2000.0) == 0.0


def test_backoff_prefers_the_servers_hint_and_otherwise_grows_with_jitter() -> None:
    policy = BackoffPolicy(max_attempts=4, base_s=1.0, cap_s=5.0, rng=lambda: 0.5)
    assert policy.delay_s(1, "2", 0) == 2.0
    assert policy.delay_s(1, "120", 0) == 5.0  # capped
    assert [policy.delay_s(a, None, 0) for a in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert policy.should_retry(1, 429) and policy.should_retry(1, 503) and policy.should_retry(1, None)
    assert not policy.should_retry(1, 400) and not policy.should_retry(1, 500)
    assert not policy.should_retry(4, 503)


class FakeEndpoint:
    """Answers 503 (with Retry-After) to the first `overloaded` calls, then 200; records bodies and peak load."""

    def __init__(self, overloaded: int = 0, status: int = 200) -> None:
        self.overloaded, self.status = overloaded, status
        self.calls, self.in_flight, self.peak = 0, 0, 0
        self.bodies: list[dict] = []

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        import json

        self.calls += 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            self.bodies.append(json.loads(request.content))
            if self.calls <= self.overloaded:
                return httpx.Response(503, headers={"Retry-After": "1"},
                                      json={"error": {"message": "busy", "type": "service_unavailable"}})
            return httpx.Response(self.status, headers={"x-request-id": f"cmpl-{self.calls}"},
                                  json={"usage": {"completion_tokens": 2}})
        finally:
            self.in_flight -= 1


def _run(endpoint: FakeEndpoint, lines: list[BatchLine], **settings: object) -> tuple[list[list[dict]], list[float]]:
    shards: list[list[dict]] = []
    slept: list[float] = []

    async def on_shard(records: list[dict], _: float) -> None:
        shards.append(records)

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    config = OnlineSettings(endpoint="http://fake", **settings)  # type: ignore[arg-type]
    asyncio.run(run_online([lines[i:i + 3] for i in range(0, len(lines), 3)], config, on_shard,
                           transport=httpx.MockTransport(endpoint), sleep=sleep))
    return shards, slept


def test_every_line_gets_one_output_and_concurrency_stays_bounded() -> None:
    endpoint = FakeEndpoint()
    shards, _ = _run(endpoint, [_line(i) for i in range(10)], concurrency=2, shards_in_flight=2)
    ids = sorted(r["custom_id"] for shard in shards for r in shard)
    assert ids == sorted(f"id{i}" for i in range(10)) and [len(s) for s in sorted(shards, key=len)] == [1, 3, 3, 3]
    assert endpoint.peak <= 2
    assert all(b["stream"] is False and "stream_options" not in b for b in endpoint.bodies)
    record = shards[0][0]
    assert record["response"]["status_code"] == 200 and record["response"]["request_id"].startswith("cmpl-")


def test_503_is_retried_after_the_servers_retry_after() -> None:
    endpoint = FakeEndpoint(overloaded=2)
    shards, slept = _run(endpoint, [_line(0)], policy=BackoffPolicy(max_attempts=5))
    assert slept == [1.0, 1.0] and endpoint.calls == 3
    assert shards[0][0]["response"]["status_code"] == 200


def test_when_retries_run_out_the_last_answer_is_the_output_line() -> None:
    endpoint = FakeEndpoint(overloaded=100)
    shards, slept = _run(endpoint, [_line(0)], policy=BackoffPolicy(max_attempts=3))
    assert endpoint.calls == 3 and len(slept) == 2
    response = shards[0][0]["response"]
    assert response["status_code"] == 503 and response["body"]["error"]["message"] == "busy"


def test_a_refused_key_stops_the_job_and_is_never_committed_as_an_answer() -> None:
    endpoint = FakeEndpoint(status=401)
    with pytest.raises(EndpointAuthError, match="HTTP 401"):
        _run(endpoint, [_line(i) for i in range(4)])


def test_the_jobs_key_is_sent_as_a_bearer_token() -> None:
    seen: list[str | None] = []

    async def endpoint(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return httpx.Response(200, json={"usage": {"completion_tokens": 1}})

    shards: list[list[dict]] = []

    async def on_shard(records: list[dict], _: float) -> None:
        shards.append(records)

    asyncio.run(run_online([[_line(0)]], OnlineSettings(endpoint="http://fake", api_key="sk-batch-0123456789"),
                           on_shard, transport=httpx.MockTransport(endpoint)))
    assert seen == ["Bearer sk-batch-0123456789"] and shards[0][0]["response"]["status_code"] == 200


def test_a_client_error_is_not_retried() -> None:
    endpoint = FakeEndpoint(status=400)
    shards, slept = _run(endpoint, [_line(0)])
    assert endpoint.calls == 1 and slept == [] and shards[0][0]["response"]["status_code"] == 400


def test_an_unreachable_endpoint_becomes_an_error_line_after_backoff() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async def go() -> tuple[dict, list[float]]:
        slept: list[float] = []

        async def sleep(seconds: float) -> None:
            slept.append(seconds)

        async with httpx.AsyncClient(base_url="http://fake", transport=httpx.MockTransport(refuse)) as client:
            out = await send_with_retries(client, _line(0), BackoffPolicy(max_attempts=3, rng=lambda: 1.0), sleep)
        return out, slept

    out, slept = asyncio.run(go())
    assert out["response"] is None and out["error"]["code"] == "connection_error"
    assert slept == [0.5, 1.0]
