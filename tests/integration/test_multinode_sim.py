"""TP x PP replicas on a simulated multi-node Ray cluster: real placement groups, created by real Ray Serve
from the app builder's options, with fake engine actors reporting the node of every bundle.

One simulated cluster and one probe run serve every shape: the three worker nodes carry several custom
resources, each standing in for a different kind of GPU box (a shape's config runs on the one whose node
size it describes), so no shape needs a cluster of its own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cluster.placement_plan import ReplicaPlan, WorkerPlacement, layout_problems, plan_model, vllm_rank_order
from configs.loader import ConfigError, parse_config
from tests.integration.placement_probe import RESULT_PREFIX
from tests.integration.sim_cluster import SimCluster, run_driver, simulated_cluster

pytestmark = pytest.mark.integration

# node 0: a 2-GPU box, a 1-GPU box, 3 free GPUs of a fragmented box | node 1: 2-GPU, 1-GPU, 1 fragmented
# node 2: a 1-GPU box and a 4-GPU box
NODES = [{"gpu2": 2, "gpu1": 1, "frag": 3}, {"gpu2": 2, "gpu1": 1, "frag": 1}, {"gpu1": 1, "gpu4": 4}]
PROBE_TIMEOUT_S = 300


def _model(name: str, tp: int, pp: int, gpus_per_node: int, nodes: int, replicas: int = 1) -> dict:
    return {"name": name, "model": "tiny-random-llama", "num_replicas": replicas, "replica_num_cpus": 0.5,
            "engine": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "block_size": 16},
            "placement": {"device": "gpu", "gpus_per_node": gpus_per_node, "nodes": nodes}}


# name -> (model config, the resource standing in for its GPUs)
SHAPES = {
    "tp2-pp2": (_model("tp2-pp2", 2, 2, 2, 2), "gpu2"),
    "tp1-pp3": (_model("tp1-pp3", 1, 3, 1, 3), "gpu1"),
    "tp4-pp1": (_model("tp4-pp1", 4, 1, 4, 1), "gpu4"),
    # The config claims two 2-GPU nodes, but the free GPUs are 3 + 1.
    "fragmented": (_model("fragmented", 2, 2, 2, 2), "frag"),
}


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    with simulated_cluster(NODES) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def layouts(sim: SimCluster) -> dict:
    spec = {"models": [config for config, _ in SHAPES.values()],
            "gpu_resources": {name: resource for name, (_, resource) in SHAPES.items()}}
    result = run_driver(sim, ["-m", "tests.integration.placement_probe", sim.address, json.dumps(spec)],
                        PROBE_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-4000:]
    (line,) = [line for line in result.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    return json.loads(line.removeprefix(RESULT_PREFIX))


def _plan(name: str) -> ReplicaPlan:
    config, resource = SHAPES[name]
    return plan_model(parse_config({"models": [config]}).models[0], resource)


def _ranked(layout: dict) -> list[WorkerPlacement]:
    workers = [WorkerPlacement(w["bundle"], w["node_id"], w["node_ip"]) for w in layout["workers"]]
    return [workers[i] for i in vllm_rank_order(workers, layout["replica_node"])]


@pytest.mark.parametrize("name", ["tp2-pp2", "tp1-pp3"])
def test_tp_groups_share_a_node_and_pp_stages_do_not(sim: SimCluster, layouts: dict, name: str) -> None:
    plan, layout = _plan(name), layouts[name]
    ranked = _ranked(layout)
    assert len(ranked) == plan.world_size  # one engine worker per GPU bundle, as vLLM's Ray executor starts
    stage_nodes = []
    for stage in range(plan.pipeline_parallel_size):
        on = {ranked[rank].node_id for rank in plan.stage_ranks(stage)}
        assert len(on) == 1, f"TP group of stage {stage} split over {on}"
        stage_nodes.append(on.pop())
    assert len(set(stage_nodes)) == plan.pipeline_parallel_size, f"stages share nodes: {stage_nodes}"
    assert set(stage_nodes) <= set(sim.node_ids)
    # The replica (vLLM's driver) sits with stage 0, and the product's own layout check agrees.
    assert layout["replica_node"] == stage_nodes[0]
    assert layout_problems(plan, ranked) == []


def test_replica_that_fits_one_node_holds_its_gpus_itself(sim: SimCluster, layouts: dict) -> None:
    layout = layouts["tp4-pp1"]
    # `mp` executor: no worker actors; the replica actor owns all four GPUs of the 4-GPU node.
    assert layout["workers"] == []
    assert layout["replica_resources"].get("gpu4") == 4.0
    assert layout["replica_node"] == sim.node_ids[2]


def test_fragmented_free_gpus_are_caught_by_the_layout_check(layouts: dict) -> None:
    # PACK places 3 + 1 and so splits a TP group: what the preflight's layout check must report before
    # vLLM would run tensor parallelism across nodes.
    ranked = _ranked(layouts["fragmented"])
    per_node = sorted(sum(1 for w in ranked if w.node_id == node) for node in {w.node_id for w in ranked})
    assert per_node == [1, 3]
    problems = layout_problems(_plan("fragmented"), ranked)
    assert any("is split across nodes" in p for p in problems)
    assert any("workers per node are [3, 1], the plan expects [2, 2]" in p for p in problems)


@pytest.mark.parametrize(("model", "expected"), [
    (_model("m", 2, 2, 2, 2, replicas=2), "need 4 nodes of 2 GPUs, but placement.nodes=2: short by 2 node(s)"),
    (_model("m", 4, 2, 2, 4), "tensor_parallel_size=4 exceeds placement.gpus_per_node=2"),
    (_model("m", 1, 4, 1, 3), "1 x 4 = 4 GPUs, but placement has 1 GPUs/node x 3 nodes = 3: short by 1 GPUs"),
])
def test_impossible_shapes_fail_at_config_load(model: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"models": [model]})
    assert expected in str(caught.value)
