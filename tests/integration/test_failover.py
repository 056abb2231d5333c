"""Failover and admission through real Ray Serve and real HTTP, with fake engines that die or stall on cue.

Every check compares exact outputs: the fake engine's greedy step is a function of the context, so a
request resumed on another replica must produce the same text as an undisturbed run.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DeployedApp, deploy_profile

pytestmark = pytest.mark.integration
CONCURRENCY = 16
MAX_TOKENS = 40  # at 20 ms a token: ~0.8 s per stream, long enough to fail mid-way


@pytest.fixture(scope="module")
def fault_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


@pytest.fixture(scope="module")
def failover_app(serve_instance: None, fault_dir: Path) -> Iterator[DeployedApp]:
    from ray import serve

    yield deploy_profile("test-fake", "failover", "/failover", model_overrides={
        "engine": {"fake_token_latency_s": 0.02, "fake_fault_dir": str(fault_dir)},
        "failover": {"stall_timeout_s": 1.0, "exclude_s": 20.0, "retry_backoff_s": 0.0},
        "health": {"period_s": 1.0, "timeout_s": 10.0},
    })
    serve.delete("failover")


def _prompt(i: int) -> str:
    return f"Request {i}: tell me about the number {i * 7919} and its neighbours, please."


async def _stream(client: httpx.AsyncClient, app: DeployedApp, i: int,
                  progress: dict[int, tuple[str | None, int]] | None = None, prompt: str | None = None,
                  max_tokens: int = MAX_TOKENS) -> dict:
    """One greedy streaming completion (of `_prompt(i)` unless `prompt` is given): its text, finish reason,
    replica and failover metadata; `progress[i]` gets (replica, events received so far) as the stream runs."""
    body = {"model": app.model, "prompt": prompt or _prompt(i), "max_tokens": max_tokens, "temperature": 0,
            "stream": True}
    text, finish, failover = [], None, None
    async with client.stream("POST", f"{app.base_url}/completions", json=body) as response:
        assert response.status_code == 200, await response.aread()
        replica = response.headers.get("x-warmserve-replica")
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            assert "error" not in event, (event, i, replica, len(text))
            for choice in event["choices"]:
                text.append(choice["text"])
                finish = choice["finish_reason"] or finish
            if progress is not None:
                progress[i] = (replica, len(text))
            failover = event.get("warmserve", {}).get("failover", failover)
    return {"text": "".join(text), "finish": finish, "replica": replica, "failover": failover}


async def _burst(app: DeployedApp, n: int = CONCURRENCY, during=None) -> list[dict]:
    """`n` concurrent streams; `during(progress)` runs beside them with their live progress."""
    progress: dict[int, tuple[str | None, int]] = {}
    async with httpx.AsyncClient(timeout=60) as client:
        tasks = [asyncio.create_task(_stream(client, app, i, progress)) for i in range(n)]
        if during is not None:
            await during(progress)
        return await asyncio.gather(*tasks)


@pytest.fixture(scope="module")
def undisturbed(failover_app: DeployedApp) -> list[str]:
    results = asyncio.run(_burst(failover_app))
    assert all(r["finish"] == "length" and r["failover"] is None for r in results)
    return [r["text"] for r in results]


def _replica_ids(app: DeployedApp, timeout_s: float = 60) -> list[str]:
    """Both replicas' ids, as the ingress routes to them (a replaced replica joins the ingress's
    routing a little after Serve reports it running)."""
    seen: set[str] = set()
    deadline, i = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        r = httpx.post(f"{app.base_url}/completions", timeout=30,
                       json={"model": app.model, "prompt": f"probe {i}", "max_tokens": 1})
        seen.add(r.headers["x-warmserve-replica"])
        if len(seen) == 2:
            return sorted(seen)
        i += 1
        time.sleep(0.05)
    raise AssertionError(f"only saw replicas {seen}")


def _wait_for_replacement(app: DeployedApp, victim: str, timeout_s: float = 120, app_name: str = "failover") -> None:
    """Serve stopped the failed replica and runs two healthy ones again. Serve lists a replica with a dead
    engine as RUNNING until its health check has failed a few times, so the victim's actor must be gone
    first: a test that starts earlier finds it still in routing."""
    import ray
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(f"SERVE_REPLICA::{app_name}#llm-tiny-fake#{victim}", namespace="serve")
        except ValueError:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"replica {victim} was never stopped")
    while time.monotonic() < deadline:
        status = serve.status().applications[app_name]
        replicas = status.deployments["llm-tiny-fake"].replica_states
        if status.status == "RUNNING" and replicas.get("RUNNING", 0) == 2 and len(replicas) == 1:
            return
        time.sleep(0.5)
    raise AssertionError(f"app did not recover: {serve.status().applications[app_name]}")


def _check_all_identical(results: list[dict], expected: list[str]) -> int:
    """Every stream finished with the undisturbed text; returns how many were resumed or retried."""
    assert [r["finish"] for r in results] == ["length"] * len(results)
    for i, (result, text) in enumerate(zip(results, expected, strict=True)):
        assert result["text"] == text, f"request {i} differs after failover: {result}"
    return sum(1 for r in results if r["failover"])


async def _busy_replica(progress: dict[int, tuple[str | None, int]], min_events: int = 5) -> str:
    """The replica of the first stream to reach `min_events` tokens: the router may put a whole burst on
    one replica, so faults go where streams really run, mid-stream."""
    deadline = time.monotonic() + 30
    while not (busy := [replica for replica, events in progress.values() if replica and events >= min_events]):
        assert time.monotonic() < deadline, f"no stream got going: {progress}"
        await asyncio.sleep(0.01)
    return busy[0]


def test_engine_death_mid_stream_loses_no_request(failover_app: DeployedApp, fault_dir: Path,
                                                  undisturbed: list[str]) -> None:
    victim = _replica_ids(failover_app)[0]
    # The next request to start on the victim arms it: after 10 of its tokens the whole engine dies,
    # mid-way through every stream it holds.
    (fault_dir / f"{victim}.json").write_text(json.dumps({"die_after_tokens": 10}))
    results = asyncio.run(_burst(failover_app))
    moved = _check_all_identical(results, undisturbed)
    assert moved >= 1
    resumed = [r["failover"] for r in results if r["failover"] and r["failover"]["resumed"]]
    assert resumed and all(victim in f["failed_replicas"] for f in resumed)
    _wait_for_replacement(failover_app, victim)  # Serve's health check replaced the dead one


def test_replica_actor_killed_mid_stream_loses_no_request(failover_app: DeployedApp, fault_dir: Path,
                                                          undisturbed: list[str]) -> None:
    import ray

    for leftover in fault_dir.glob("*.json"):  # a fault no request consumed must not fire here
        leftover.unlink()
    _replica_ids(failover_app)  # both replicas answering (the previous test's victim replaced)

    killed: list[str] = []

    async def kill_after_some_tokens(progress: dict[int, tuple[str | None, int]]) -> None:
        killed.append(await _busy_replica(progress))
        ray.kill(ray.get_actor(f"SERVE_REPLICA::failover#llm-tiny-fake#{killed[0]}", namespace="serve"),
                 no_restart=True)

    results = asyncio.run(_burst(failover_app, during=kill_after_some_tokens))
    assert _check_all_identical(results, undisturbed) >= 1
    assert all(killed[0] in r["failover"]["failed_replicas"] for r in results if r["failover"])
    _wait_for_replacement(failover_app, killed[0])


def _long_prompt() -> str:
    """~400 tokens: a prefix whose cached copy outweighs any load the router can see on its replica."""
    return "Shared notes: " + " ".join(f"item {k} weighs {k * 37 % 101} grams;" for k in range(18))


def test_stalled_replica_is_left_and_its_streams_resume(failover_app: DeployedApp, fault_dir: Path,
                                                        undisturbed: list[str]) -> None:
    for leftover in fault_dir.glob("*.json"):
        leftover.unlink()
    _replica_ids(failover_app)  # both replicas in the ingress's routing (the previous test's victim replaced)
    # An undisturbed run of the long prompt gives its expected text and caches it where it ran: the victim.
    # Its prefix then draws both requests below to the victim (elsewhere ~25 blocks would be recomputed).
    with httpx.Client(timeout=60) as client:
        probe = client.post(f"{failover_app.base_url}/completions", json={
            "model": failover_app.model, "prompt": _long_prompt(), "max_tokens": MAX_TOKENS, "temperature": 0})
    assert probe.status_code == 200, probe.text
    victim, expected_long = probe.headers["x-warmserve-replica"], probe.json()["choices"][0]["text"]
    (fault_dir / f"{victim}.json").write_text(json.dumps({"stall_after_tokens": 5, "stall_s": 30}))

    async def run() -> tuple[dict, dict, list[dict]]:
        progress: dict[int, tuple[str | None, int]] = {}
        async with httpx.AsyncClient(timeout=60) as client:
            # The first stream takes the fault: 5 tokens, then its engine stops answering for 30 s.
            stalled = asyncio.create_task(_stream(client, failover_app, -1, progress, prompt=_long_prompt()))
            deadline = time.monotonic() + 30
            while progress.get(-1, (None, 0))[1] < 5:
                assert time.monotonic() < deadline and not stalled.done(), f"the stream never started: {progress}"
                await asyncio.sleep(0.01)
            # Within the second before the silence counts as a stall, a second request (and a burst) arrive;
            # the second goes to the victim and waits there for a first token that will not come.
            queued = asyncio.create_task(_stream(client, failover_app, -2, prompt=_long_prompt()))
            burst = [asyncio.create_task(_stream(client, failover_app, i)) for i in range(CONCURRENCY)]
            return await stalled, await queued, await asyncio.gather(*burst)

    start = time.monotonic()
    stalled, queued, results = asyncio.run(run())
    elapsed = time.monotonic() - start
    _check_all_identical(results, undisturbed)
    assert stalled["text"] == expected_long and stalled["failover"]["resumed"] == 1
    assert stalled["failover"]["failed_replicas"] == [victim]
    assert queued["text"] == expected_long
    print(f"stall: done in {elapsed:.1f} s; the stalled stream {stalled['failover']}, the queued request "
          f"{queued['failover'] or 'ran elsewhere: it reached the router after the exclusion'}")
    assert queued["failover"] is None or queued["failover"] == {"retried": 1, "resumed": 0,
                                                                "failed_replicas": [victim]}
    # 1 s of silence moves the stalled stream; the exclusion that follows moves the request queued behind
    # it. The stall lasts 30 s (the margin is for a busy machine).
    assert elapsed < 20, f"requests waited out the stall ({elapsed:.1f} s) instead of moving"


def test_a_request_the_engine_ends_with_an_error_moves_and_its_replica_stays(
        failover_app: DeployedApp, fault_dir: Path, undisturbed: list[str]) -> None:
    """vLLM's `error` finish (a retryable request-level failure) is failed over like a broken stream, not
    passed to the client as an answer; the replica, whose engine is fine, stays in service."""
    for leftover in fault_dir.glob("*.json"):
        leftover.unlink()
    victim = _replica_ids(failover_app)[0]
    (fault_dir / f"{victim}.json").write_text(json.dumps({"error_after_tokens": 10}))
    results = asyncio.run(_burst(failover_app))
    assert _check_all_identical(results, undisturbed) >= 1
    moved = [r["failover"] for r in results if r["failover"]]
    assert all(f["failed_replicas"] == [victim] for f in moved), moved
    assert victim in _replica_ids(failover_app)  # still serving: no replacement was needed


@pytest.fixture(scope="module")
def window_app(serve_instance: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DeployedApp, Path]]:
    """A 1 s retry window, 20 ms tokens, and replicas that hold 6 requests each (the rest queue)."""
    from ray import serve

    faults = tmp_path_factory.mktemp("window-faults")
    yield deploy_profile("test-fake", "failover-window", "/failover-window", model_overrides={
        "engine": {"fake_token_latency_s": 0.02, "fake_fault_dir": str(faults)},
        "failover": {"retry_window_s": 1.0, "retry_backoff_s": 0.0, "exclude_s": 20.0},
        "max_ongoing_requests": 6,
    }), faults
    serve.delete("failover-window")


async def _long_streams(app: DeployedApp, count: int = 6, max_tokens: int = 200) -> list[dict]:
    async with httpx.AsyncClient(timeout=60) as client:
        return await asyncio.gather(*(_stream(client, app, i, max_tokens=max_tokens) for i in range(count)))


def test_ready_answers_at_once_while_every_replica_is_busy(window_app: tuple[DeployedApp, Path]) -> None:
    """A busy, healthy cluster is ready: /ready reads the replica states Serve reports instead of queueing
    a probe behind the requests that fill every replica (6 each: 12 streams of ~6 s)."""
    app, _ = window_app
    assert httpx.get(f"{app.root_url}/ready", timeout=30).status_code == 200

    async def busy_then_probe() -> list[tuple[int, float]]:
        load = asyncio.create_task(_long_streams(app, count=12, max_tokens=300))
        await asyncio.sleep(1.0)  # every replica full, the rest queued
        probes = []
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(4):
                start = time.monotonic()
                response = await client.get(f"{app.root_url}/ready")
                probes.append((response.status_code, time.monotonic() - start))
                await asyncio.sleep(0.2)
        assert not load.done(), "the load ended before the probes"
        await load
        return probes

    probes = asyncio.run(busy_then_probe())
    print(f"/ready under load: {probes}")
    assert [status for status, _ in probes] == [200] * 4
    assert max(seconds for _, seconds in probes) < 1.0


def test_a_resumed_stream_runs_to_its_end_past_the_retry_window(window_app: tuple[DeployedApp, Path]) -> None:
    """The retry window (1 s here) bounds the wait for a moved request's first token, never how long the
    resumed stream may then flow: 200 tokens at 20 ms each run ~4 s after the failure and arrive whole."""
    app, faults = window_app
    expected = [r["text"] for r in asyncio.run(_long_streams(app))]
    victim = _replica_ids(app)[0]
    (faults / f"{victim}.json").write_text(json.dumps({"die_after_tokens": 10}))
    results = asyncio.run(_long_streams(app))
    resumed = [r for r in results if r["failover"] and r["failover"]["resumed"]]
    assert resumed, f"no stream ran on the victim {victim}: {[r['replica'] for r in results]}"
    assert [r["finish"] for r in results] == ["length"] * len(results)
    assert [r["text"] for r in results] == expected

    # The same through `warmserve chaos --long-streams`: a replica actor killed early, every stream then
    # runs ~5 s more (5x the window) and arrives complete and unchanged.
    from cluster.chaos import run_chaos

    _wait_for_replacement(app, victim, app_name="failover-window")
    report, _ = asyncio.run(run_chaos(app.base_url, app.model, "failover-window", "llm-tiny-fake",
                                      ["replica_kill"], requests=6, concurrency=6, max_tokens=300,
                                      long_streams=True))
    print(report.summary())
    assert report.passed and report.resumed >= 1, report.summary()


def test_overload_answers_at_once_with_retry_after(serve_instance: None) -> None:
    from ray import serve

    app = deploy_profile("test-fake", "admission", "/admission", model_overrides={
        "engine": {"fake_token_latency_s": 0.05},
        "admission": {"max_inflight": 8, "max_inflight_per_client": 3, "max_queued_requests": 4,
                      "retry_after_s": 2},
    })
    try:
        async def one(client: httpx.AsyncClient, key: str | None) -> tuple[int, float, dict, str | None]:
            headers = {"authorization": f"Bearer {key}"} if key else {}
            start = time.monotonic()
            r = await client.post(f"{app.base_url}/completions", headers=headers,
                                  json={"model": app.model, "prompt": "overload", "max_tokens": 20})
            return r.status_code, time.monotonic() - start, r.json(), r.headers.get("retry-after")

        async def flood() -> list[tuple[int, float, dict, str | None]]:
            async with httpx.AsyncClient(timeout=30) as client:
                anonymous = [one(client, None) for _ in range(80)]  # 10x the model's bound
                one_key = [one(client, "k1") for _ in range(10)]
                return await asyncio.gather(*anonymous, *one_key)

        results = asyncio.run(flood())
        statuses = sorted({status for status, *_ in results})
        assert set(statuses) <= {200, 429, 503} and 200 in statuses and 503 in statuses, statuses
        refused = [(s, t, body, ra) for s, t, body, ra in results if s != 200]
        assert all(ra == "2" and body["error"]["code"] for _, _, body, ra in refused)
        times = sorted(t for _, t, *_ in refused)
        p99 = times[int(0.99 * (len(times) - 1))]
        print(f"overload: {len(results)} requests, {statuses} -> {len(refused)} refused, "
              f"p99 time to the refusal {p99 * 1000:.0f} ms")
        # Queued instead of refused, the last of them would wait for ~10 rounds of the 8 admitted requests
        # (20 tokens at 50 ms each, 1 s a round): 10 s. Refused at once, they take the ingress's time to
        # parse and tokenize the burst: 0.3-0.7 s alone on 2 cores, up to 1.5 s inside the full suite.
        assert p99 < 3.0, times[-5:]
        key_statuses = [s for s, *_ in results[80:]]
        assert key_statuses.count(200) <= 3  # one client never holds more than its share
    finally:
        serve.delete("admission")
