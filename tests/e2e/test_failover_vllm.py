"""Mid-stream failover on real vLLM: SIGKILL one replica's engine core under 50 concurrent greedy streams.

Runs last (conftest orders it): the killed replica is being replaced by Serve for a minute or so after.
"""

from __future__ import annotations

import asyncio

import pytest

from cluster.chaos import run_chaos
from deployments.app_builder import llm_deployment_name
from tests.conftest import DeployedApp

pytestmark = pytest.mark.e2e


def test_engine_sigkill_mid_stream_loses_no_request_and_changes_no_text(vllm_app: DeployedApp) -> None:
    report, outcomes = asyncio.run(run_chaos(
        vllm_app.base_url, vllm_app.model, vllm_app.name, llm_deployment_name(vllm_app.model),
        faults=["engine_kill"], requests=50, concurrency=50, max_tokens=32, seed=0))
    print(report.summary())
    assert len(report.faults) == 1 and report.faults[0].startswith("SIGKILL engine pids")
    assert report.lost == [], [outcomes[i] for i in report.lost]
    assert report.mismatched == [], report.mismatch_details
    # The kill landed mid-run, so some streams really moved to the other replica.
    assert report.resumed + report.retried >= 1
