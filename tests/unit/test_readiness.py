"""/ready's view of Serve: answered from the controller's last report, refreshed only when probed."""

from __future__ import annotations

import asyncio

from deployments.readiness import ReadinessWatch, ReplicaStates, Watched

WATCHED = [Watched("m", "app", "llm-m")]


def test_ready_from_running_replicas_and_polled_only_when_probed() -> None:
    calls: list[int] = []
    answers: list[ReplicaStates] = [{("app", "llm-m"): {"STARTING": 2}}, {("app", "llm-m"): {"RUNNING": 1}}]

    def fetch() -> ReplicaStates:
        calls.append(1)
        return answers[min(len(calls), len(answers)) - 1]

    async def scenario() -> list[list[str]]:
        watch = ReadinessWatch(WATCHED, fetch=fetch, poll_s=0.05)
        first = await watch.missing()
        await asyncio.sleep(0.2)  # nobody probes: nothing is asked
        asked_while_idle = len(calls)
        stale = await watch.missing()  # answers at once from the last report, refreshes behind it
        await asyncio.sleep(0.05)
        fresh = await watch.missing()
        assert asked_while_idle == 1
        return [first, stale, fresh]

    first, stale, fresh = asyncio.run(scenario())
    assert first == ["m: no running replica (2 STARTING)"] and stale == first and fresh == []


def test_a_failing_controller_keeps_the_last_answer() -> None:
    state = {"fail": False}

    def fetch() -> ReplicaStates:
        if state["fail"]:
            raise TimeoutError("controller busy")
        return {("app", "llm-m"): {"RUNNING": 2}}

    async def scenario() -> list[str]:
        watch = ReadinessWatch(WATCHED, fetch=fetch, poll_s=0.01)
        assert await watch.missing() == []
        state["fail"] = True
        await asyncio.sleep(0.05)
        await watch.missing()
        await asyncio.sleep(0.05)
        return await watch.missing()

    assert asyncio.run(scenario()) == []
