"""Pure placement planning: bundles and strategy per shape, config-load shortfalls, vLLM's rank order, the
layout check the preflight applies, and the preflight's diagnosis and report text (no Ray, no torch)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from cluster.placement_plan import (WorkerPlacement, describe_plan, layout_problems, plan_model,
                                    vllm_rank_order)
from cluster.preflight_diagnosis import likely_cause
from cluster.preflight_report import LinkResult, PreflightFailure, PreflightReport, RankPlacement, format_report
from configs.loader import ConfigError, load_config, parse_config
from configs.schema import LLMModelConfig
from engines.placement import executor_backend, replica_resources


def _gpu_model(tp: int, pp: int, gpus_per_node: int, nodes: int, replicas: int = 1) -> LLMModelConfig:
    entry = {"name": "m", "model": "x", "num_replicas": replicas,
             "engine": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "block_size": 16},
             "placement": {"device": "gpu", "gpus_per_node": gpus_per_node, "nodes": nodes}}
    return parse_config({"models": [entry]}).models[0]


def _issue(tp: int, pp: int, gpus_per_node: int, nodes: int, replicas: int = 1) -> str:
    with pytest.raises(ConfigError) as caught:
        _gpu_model(tp, pp, gpus_per_node, nodes, replicas)
    assert len(caught.value.issues) == 1
    return str(caught.value.issues[0])


def test_cpu_tp2_profile_keeps_its_layout() -> None:
    resources = replica_resources(load_config("local-tp2").models[0])
    assert resources.bundles == [{"CPU": 1.0}, {"CPU": 1.0}, {"CPU": 1.0}]
    assert resources.strategy == "STRICT_PACK" and resources.actor == {"CPU": 1.0}
    assert resources.worker_bundles == [1, 2] and resources.executor == "mp" and not resources.spans_nodes


def test_replica_spanning_nodes_gets_one_bundle_per_gpu_and_the_ray_executor() -> None:
    resources = replica_resources(_gpu_model(8, 2, 8, 2))
    assert len(resources.bundles) == 16 and resources.strategy == "PACK"
    # The replica actor is merged into the first worker's bundle, as Ray Serve LLM does; it takes no GPU.
    assert resources.bundles[0] == {"CPU": 2.0, "GPU": 1.0}
    assert all(bundle == {"CPU": 1.0, "GPU": 1.0} for bundle in resources.bundles[1:])
    assert resources.actor == {"CPU": 1.0} and resources.worker == {"GPU": 1.0}
    assert resources.worker_bundles == list(range(16)) and resources.node_shares == [8, 8]
    assert resources.executor == "ray" and resources.total == {"CPU": 17.0, "GPU": 16.0}


@pytest.mark.parametrize(("tp", "pp", "gpus_per_node", "nodes", "shares", "strategy", "executor"), [
    (2, 2, 2, 2, [2, 2], "PACK", "ray"),
    (1, 3, 1, 3, [1, 1, 1], "PACK", "ray"),
    (2, 3, 4, 2, [4, 2], "PACK", "ray"),
    (4, 1, 4, 1, [4], "STRICT_PACK", "mp"),
    (2, 2, 8, 1, [4], "STRICT_PACK", "mp"),
    (1, 1, 8, 1, [1], "STRICT_PACK", "uni"),
])
def test_shapes(tp: int, pp: int, gpus_per_node: int, nodes: int, shares: list[int], strategy: str,
                executor: str) -> None:
    model = _gpu_model(tp, pp, gpus_per_node, nodes)
    resources = replica_resources(model)
    assert resources.node_shares == shares and resources.strategy == strategy
    assert resources.executor == executor == executor_backend(model.engine, model.placement)
    # Every node a replica spans holds whole TP groups, so no TP group can cross a node boundary.
    assert all(share % tp == 0 for share in shares)
    assert resources.total["GPU"] == tp * pp


def test_custom_resource_stands_in_for_gpus() -> None:
    resources = replica_resources(_gpu_model(2, 2, 2, 2), gpu_resource="fake_gpu")
    assert resources.bundles[0] == {"CPU": 2.0, "fake_gpu": 1.0} and resources.worker == {"fake_gpu": 1.0}
    single = replica_resources(_gpu_model(4, 1, 4, 1), gpu_resource="fake_gpu")
    assert single.bundles == [{"CPU": 5.0, "fake_gpu": 4.0}] and single.actor == single.bundles[0]


def test_shortfalls_are_named_at_config_load() -> None:
    assert "tensor_parallel_size=16 exceeds placement.gpus_per_node=8" in _issue(16, 1, 8, 2)
    issue = _issue(8, 2, 8, 1)
    assert "8 x 2 = 16 GPUs" in issue and "8 GPUs/node x 1 nodes = 8" in issue and "short by 8 GPUs" in issue
    issue = _issue(4, 2, 6, 2)
    assert "gpus_per_node=6 is not a multiple of tensor_parallel_size=4" in issue
    issue = _issue(8, 2, 8, 2, replicas=2)
    assert "num_replicas=2" in issue and "need 4 nodes of 8 GPUs" in issue and "placement.nodes=2" in issue
    assert "short by 2 node(s)" in issue
    issue = _issue(4, 1, 8, 1, replicas=3)  # two per node fit, the third needs a second node
    assert "need 2 nodes" in issue and "short by 1 node(s)" in issue


def test_nodes_for_replicas() -> None:
    placement = _gpu_model(1, 1, 8, 64).placement
    assert placement.nodes_for_replicas(8, 2, 3) == 6
    assert placement.nodes_for_replicas(4, 3, 2) == 3  # [8, 4] each: the two 4-GPU remainders share a node
    assert placement.nodes_for_replicas(2, 1, 9) == 3
    assert placement.replica_node_shares(4, 3) == [8, 4]


def test_fitting_replicas_validate() -> None:
    assert _gpu_model(8, 2, 8, 4, replicas=2).num_replicas == 2
    assert _gpu_model(4, 1, 8, 1, replicas=2).num_replicas == 2


def _placed(bundle: int, node: str, ip: str = "10.0.0.1") -> WorkerPlacement:
    return WorkerPlacement(bundle, node * 8, ip)


def test_rank_order_follows_vllm_driver_node_first_then_creation_order() -> None:
    workers = [_placed(0, "b", "10.0.0.2"), _placed(1, "a"), _placed(2, "b", "10.0.0.2"), _placed(3, "a")]
    order = vllm_rank_order(workers, driver_node_id="b" * 8)
    assert order == [0, 2, 1, 3]
    # Fewer workers on a node come first after the driver's node (vLLM's second key).
    workers = [_placed(0, "a"), _placed(1, "c", "10.0.0.3"), _placed(2, "c", "10.0.0.3"), _placed(3, "b", "10.0.0.9")]
    assert vllm_rank_order(workers, driver_node_id="a" * 8) == [0, 3, 1, 2]


def test_layout_check_accepts_the_planned_layout_and_names_a_split_tp_group() -> None:
    plan = plan_model(_gpu_model(2, 2, 2, 2))
    good = [_placed(0, "a"), _placed(1, "a"), _placed(2, "b"), _placed(3, "b")]
    assert layout_problems(plan, good) == []
    split = [_placed(0, "a"), _placed(1, "b"), _placed(2, "b"), _placed(3, "a")]
    problems = layout_problems(plan, split)
    assert any("stage 0 (ranks 0-1) is split across nodes" in p and "aaaaaaaa" in p and "bbbbbbbb" in p
               for p in problems)
    together = [_placed(i, "a") for i in range(4)]
    assert layout_problems(plan, together) == ["workers per node are [4], the plan expects [2, 2] (2 node(s) per "
                                               "replica); placement.nodes/gpus_per_node may not match the cluster's "
                                               "nodes"]


def test_pipeline_links_pair_equal_tp_ranks_of_consecutive_stages() -> None:
    plan = plan_model(_gpu_model(2, 3, 2, 3))
    assert plan.pipeline_links() == [(0, 2), (1, 3), (2, 4), (3, 5)]
    assert plan.stage_ranks(2) == [4, 5] and plan.world_size == 6
    line = describe_plan(plan)
    assert "TP=2 x PP=3 = 6 GPU workers on 3 node(s) (2 + 2 + 2)" in line and "PACK" in line and "ray" in line


def test_likely_causes_name_the_settings() -> None:
    rendezvous = likely_cause("rendezvous", "DistNetworkError: The client socket has timed out", "gloo", False)
    assert "--master-addr" in rendezvous and "firewall" in rendezvous
    assert "GLOO_SOCKET_IFNAME" in likely_cause("init gloo", "Connection reset by peer", "gloo", False)
    # Rank 0 timing out while others never arrived points at their failure, not at gloo.
    assert "never registered" in likely_cause("init gloo", "DistStoreError: wait timeout after 5000ms, keys: /0",
                                              "gloo", False)
    assert "refused the connection" in likely_cause("rendezvous", "cannot reach ...: [Errno 111] Connection refused",
                                             "gloo", False)
    nccl = likely_cause("init nccl", "NCCL error: unhandled system error", "nccl", False)
    assert "NCCL_SOCKET_IFNAME" in nccl and "NCCL_IB_DISABLE" in nccl
    assert "GPU per rank" in likely_cause("init nccl", "Duplicate GPU detected : rank 1 and rank 0", "nccl", True)
    assert "between the nodes" in likely_cause("send_recv 0->2", "timed out", "gloo", False)
    assert "free GPUs" in likely_cause("placement", "placed 0 of 1", "nccl", True)


def test_report_text_names_nodes_links_and_failures() -> None:
    report = PreflightReport("m", 0, "gloo", 4, 2, 2, ok=False, elapsed_s=12.5, master="10.0.0.1:4242",
                             placement=[RankPlacement(r, r, "aaaa (10.0.0.1)" if r < 2 else "bbbb (10.0.0.2)", r // 2)
                                        for r in range(4)],
                             links=[LinkResult("send_recv", [0, 2], ["aaaa (10.0.0.1)", "bbbb (10.0.0.2)"], 120.0,
                                               1.5, 2**22)],
                             failures=[PreflightFailure("rendezvous", ("bbbb (10.0.0.2)", "aaaa (10.0.0.1)"), [2, 3],
                                                        "timed out", "firewall", 10.2)],
                             node_env={"bbbb (10.0.0.2)": {"GLOO_SOCKET_IFNAME": "eth1"}})
    text = format_report(report)
    assert "node aaaa (10.0.0.1): ranks 0-1 (stage 0)" in text
    assert "node bbbb (10.0.0.2): ranks 2-3 (stage 1) GLOO_SOCKET_IFNAME=eth1" in text
    assert "PP link rank 0 -> 2: aaaa (10.0.0.1) -> bbbb (10.0.0.2): latency 120 us, bandwidth 1.50 GB/s" in text
    assert "FAILED rendezvous (node bbbb (10.0.0.2) -> node aaaa (10.0.0.1), ranks 2-3, after 10.2 s)" in text
    assert text.endswith("FAILED in 12.5 s")


def test_preflight_cli_rejects_bad_env_before_connecting() -> None:
    from cluster.cli import build_parser
    from cluster.preflight_cmd import cmd_preflight

    args = build_parser().parse_args(["preflight", "--config", "test-fake", "--env", "NO_EQUALS"])

    def never(address: str, namespace: str, joined: bool) -> None:
        raise AssertionError("must not connect on bad input")

    assert isinstance(args, argparse.Namespace) and cmd_preflight(args, never) == 2


def test_kuberay_example_config_validates_and_matches_its_worker_pods() -> None:
    path = Path(__file__).resolve().parents[2] / "docs" / "kuberay" / "rayservice.yaml"
    config_map, service = yaml.safe_load_all(path.read_text())
    model = parse_config(yaml.safe_load(config_map["data"]["warmserve.yaml"])).models[0]
    (workers,) = service["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    limits = workers["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert workers["replicas"] == model.placement.nodes and limits["nvidia.com/gpu"] == model.placement.gpus_per_node
    app = yaml.safe_load(service["spec"]["serveConfigV2"])["applications"][0]
    assert app["import_path"] == "cluster.serve_app:app_builder"
    assert replica_resources(model).executor == "ray"
