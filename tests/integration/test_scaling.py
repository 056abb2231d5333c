"""Drain on scale-down and LLM-signal autoscaling, through real Ray Serve with fake engines."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import DeployedApp, deploy_profile

pytestmark = pytest.mark.integration
# Where the autoscaling test leaves its replicas-vs-load timeline (docs/benchmarks.md plots it).
TIMELINE_PATH = Path("/tmp/warmserve-autoscaling-timeline.json")
# Tokens per stream in the drain test, and the fake engine's time per token: together long enough (~12 s)
# to outlast a slow scale-down plus the grace period. 400 tokens is near the fake model's 512-token context.
STREAM_TOKENS = 400
TOKEN_LATENCY_S = 0.03


async def _stream(client: httpx.AsyncClient, app: DeployedApp, i: int, max_tokens: int) -> dict:
    body = {"model": app.model, "prompt": f"Stream {i} of the drain test, with a distinct prompt {i * 31}.",
            "max_tokens": max_tokens, "temperature": 0, "stream": True}
    text, finish, failover = [], None, None
    async with client.stream("POST", f"{app.base_url}/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            assert "error" not in event, event
            text += [c["text"] for c in event["choices"]]
            finish = next((c["finish_reason"] for c in event["choices"] if c["finish_reason"]), finish)
            failover = event.get("warmserve", {}).get("failover", failover)
    return {"text": "".join(text), "finish": finish, "failover": failover}


async def _burst(app: DeployedApp, n: int, max_tokens: int, during=None) -> list[dict]:
    async with httpx.AsyncClient(timeout=120) as client:
        tasks = [asyncio.create_task(_stream(client, app, i, max_tokens)) for i in range(n)]
        if during is not None:
            await during()
        return await asyncio.gather(*tasks)


def _replica_states(app_name: str) -> dict[str, int]:
    from ray import serve

    return dict(serve.status().applications[app_name].deployments["llm-tiny-fake"].replica_states)


def test_scale_down_drains_and_resumes_streams_past_the_grace_period(serve_instance: None) -> None:
    from ray import serve

    overrides = {"num_replicas": 2, "engine": {"fake_token_latency_s": TOKEN_LATENCY_S}, "drain": {"grace_s": 1.0}}
    app = deploy_profile("test-fake", "drain", "/drain", model_overrides=overrides)
    try:
        # Each stream runs ~12 s (more on a loaded CI host). The scale-down below reaches the replica 1-3 s
        # into the burst, so its streams are still running when its 1 s grace period ends. With 3 s streams
        # a slow redeploy let every stream finish inside the grace period and nothing was resumed; 12 s
        # leaves 4x headroom over the slowest scale-down seen on CI (~3 s).
        undisturbed = asyncio.run(_burst(app, 12, STREAM_TOKENS))

        async def scale_down_mid_stream() -> None:
            await asyncio.sleep(0.5)
            # Only the replica count changes: a scale operation, not a redeploy of the survivor.
            await asyncio.to_thread(deploy_profile, "test-fake", "drain", "/drain",
                                    model_overrides={**overrides, "num_replicas": 1})

        results = asyncio.run(_burst(app, 12, STREAM_TOKENS, during=scale_down_mid_stream))
        assert [r["finish"] for r in results] == ["length"] * 12
        assert [r["text"] for r in results] == [r["text"] for r in undisturbed]
        # The stopped replica's streams outlived its 1 s grace period and moved to the survivor.
        assert any(r["failover"] and r["failover"]["resumed"] for r in results)
        assert _replica_states("drain") == {"RUNNING": 1}
    finally:
        serve.delete("drain")


def test_step_load_scales_up_and_back_down_within_the_delays(serve_instance: None) -> None:
    from ray import serve

    app = deploy_profile("test-fake", "autoscale", "/autoscale", model_overrides={
        "engine": {"fake_token_latency_s": 0.05},
        "autoscaling": {"min_replicas": 1, "max_replicas": 3, "target_ongoing_requests": 4,
                        "target_ttft_s": None, "upscale_delay_s": 2, "downscale_delay_s": 6,
                        "look_back_period_s": 2},
    })
    timeline: list[dict[str, float]] = []
    load = {"users": 0}
    start = time.monotonic()

    def sample() -> None:
        running = _replica_states("autoscale").get("RUNNING", 0)
        timeline.append({"t": round(time.monotonic() - start, 1), "users": load["users"], "replicas": running})

    async def users(n: int, seconds: float) -> list[dict]:
        """`n` closed-loop users sending 100-token streams (5 s each) for `seconds`."""
        load["users"] = n
        end = time.monotonic() + seconds
        done: list[dict] = []
        async with httpx.AsyncClient(timeout=120) as client:
            async def user(u: int) -> None:
                while time.monotonic() < end:
                    done.append(await _stream(client, app, u, 100))
            await asyncio.gather(*(user(u) for u in range(n)))
        load["users"] = 0
        return done

    async def scenario() -> list[dict]:
        async def sampler() -> None:
            while True:
                await asyncio.to_thread(sample)
                await asyncio.sleep(1)

        watch = asyncio.create_task(sampler())
        await asyncio.sleep(3)  # idle
        finished = await users(12, 50)  # step up: 12 ongoing needs 3 replicas at 4 each
        await asyncio.sleep(40)  # step down to idle
        watch.cancel()
        return finished

    try:
        finished = asyncio.run(scenario())
        TIMELINE_PATH.write_text(json.dumps(timeline))
        assert finished and all(r["finish"] == "length" for r in finished)
        # New replicas take a while to start on a busy 2-core machine: judge the load's last 10 s.
        under_load = [p["replicas"] for p in timeline if p["users"] and p["t"] > 3 + 40]
        assert max(p["replicas"] for p in timeline) == 3 and under_load and min(under_load) == 3, timeline
        # Steady load: once at 3 it stays at 3 (no flapping).
        reached = next(i for i, p in enumerate(timeline) if p["replicas"] == 3)
        assert all(p["replicas"] == 3 for p in timeline[reached:] if p["users"]), timeline
        assert timeline[-1]["replicas"] == 1, timeline  # back down within the 40 s idle tail
    finally:
        serve.delete("autoscale")


def test_deleting_the_app_lets_running_streams_finish(serve_instance: None) -> None:
    """What `warmserve down` does (serve.delete / shutdown): replicas and the ingress drain first."""
    from ray import serve

    app = deploy_profile("test-fake", "shutdown", "/shutdown", model_overrides={
        "engine": {"fake_token_latency_s": 0.02}, "drain": {"grace_s": 20.0}})

    async def delete_mid_stream() -> None:
        await asyncio.sleep(0.5)
        await asyncio.to_thread(serve.delete, "shutdown")

    results = asyncio.run(_burst(app, 8, 100, during=delete_mid_stream))  # ~2 s per stream
    assert [r["finish"] for r in results] == ["length"] * 8
    assert all(len(r["text"]) > 0 for r in results)


def test_scale_to_zero_and_back_on_the_first_request(serve_instance: None) -> None:
    from ray import serve

    app = deploy_profile("test-fake", "zero", "/zero", model_overrides={
        "autoscaling": {"min_replicas": 0, "max_replicas": 1, "target_ttft_s": None, "upscale_delay_s": 0,
                        "downscale_delay_s": 3, "look_back_period_s": 2},
        "failover": {"first_token_timeout_s": 90},
    })
    try:
        deadline = time.monotonic() + 90
        while _replica_states("zero").get("RUNNING", 0) and time.monotonic() < deadline:
            time.sleep(1)
        assert _replica_states("zero").get("RUNNING", 0) == 0, "idle deployment did not scale to zero"
        start = time.monotonic()
        r = httpx.post(f"{app.base_url}/completions", timeout=120,
                       json={"model": app.model, "prompt": "wake up", "max_tokens": 4, "temperature": 0})
        waited = time.monotonic() - start
        assert r.status_code == 200, r.text  # the first request waited for a replica to start
        assert r.json()["choices"][0]["finish_reason"] == "length"
        print(f"scale from zero: first request answered after {waited:.1f} s")
    finally:
        serve.delete("zero")
