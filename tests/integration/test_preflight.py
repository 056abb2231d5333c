"""`warmserve preflight` on a simulated two-node cluster: real torch.distributed (gloo) between actors placed in
each replica's placement group, a real all-reduce and send/recv, and failures named by node pair in time.

Every check runs the real CLI as a driver of the simulated cluster (tests/integration/sim_cluster.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.integration.sim_cluster import SimCluster, json_reports, run_driver, simulated_cluster

pytestmark = pytest.mark.integration

# Two nodes, each a 2-GPU box and a 1-GPU box (custom resources standing in for GPUs).
NODES = [{"gpu2": 2, "gpu1": 1}, {"gpu2": 2, "gpu1": 1}]
CLI_TIMEOUT_S = 240


@pytest.fixture(scope="module")
def sim() -> Iterator[SimCluster]:
    with simulated_cluster(NODES) as cluster:
        yield cluster


def _config(tmp_path: Path, tp: int, pp: int, gpus_per_node: int, nodes: int) -> Path:
    model = {"name": f"tp{tp}-pp{pp}", "model": "tiny-random-llama", "replica_num_cpus": 0.5,
             "engine": {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "block_size": 16},
             "placement": {"device": "gpu", "gpus_per_node": gpus_per_node, "nodes": nodes}}
    path = tmp_path / f"{model['name']}-{nodes}.yaml"
    path.write_text(yaml.safe_dump({"models": [model]}))
    return path


def _preflight(sim: SimCluster, config: str | Path, *flags: str) -> tuple[int, list[dict], float]:
    start = time.monotonic()
    result = run_driver(sim, ["-m", "cluster.cli", "preflight", "--config", str(config), "--address", sim.address,
                              "--json", *flags], CLI_TIMEOUT_S)
    elapsed = time.monotonic() - start
    assert result.returncode in (0, 1), result.stderr[-4000:]
    return result.returncode, json_reports(result.stdout), elapsed


def test_gloo_all_reduce_and_pipeline_links_across_nodes(sim: SimCluster, tmp_path: Path) -> None:
    code, reports, _ = _preflight(sim, _config(tmp_path, 2, 2, 2, 2), "--gpu-resource", "gpu2",
                                  "--bandwidth-mb", "4")
    assert code == 0, reports
    (report,) = reports
    assert report["ok"] and report["backend"] == "gloo" and report["world_size"] == 4 and not report["failures"]
    node_of = {p["rank"]: p["node"] for p in report["placement"]}
    assert node_of[0] == node_of[1] and node_of[2] == node_of[3] and node_of[0] != node_of[2]
    links = {(link["kind"], tuple(link["ranks"])): link for link in report["links"]}
    assert set(links) == {("all_reduce", (0, 1)), ("all_reduce", (2, 3)),
                          ("send_recv", (0, 2)), ("send_recv", (1, 3))}
    for (kind, _), link in links.items():
        assert link["latency_us"] > 0 and link["bandwidth_gbps"] > 0 and link["size_bytes"] == 4 * 2**20
        # TP all-reduce stays inside one node; each pipeline link crosses from stage 0's node to stage 1's.
        assert len(link["nodes"]) == (1 if kind == "all_reduce" else 2)


def test_unreachable_rendezvous_is_named_by_node_pair_within_the_bound(sim: SimCluster, tmp_path: Path) -> None:
    op_timeout_s = 5.0
    # 198.51.100.1 is TEST-NET-2 (RFC 5737): never routed, so connecting to it can only time out or fail.
    code, reports, elapsed = _preflight(sim, _config(tmp_path, 1, 2, 1, 2), "--gpu-resource", "gpu1",
                                        "--master-addr", "198.51.100.1", "--op-timeout-s", str(op_timeout_s),
                                        "--timeout-s", "60")
    assert code == 1
    (report,) = reports
    assert not report["ok"] and report["master"].startswith("198.51.100.1:")
    node_of = {p["rank"]: p["node"] for p in report["placement"]}
    assert node_of[0] != node_of[1]
    rendezvous = [f for f in report["failures"] if f["phase"] == "rendezvous"]
    assert rendezvous, report["failures"]
    failure = rendezvous[0]
    assert failure["ranks"] == [1] and failure["node_pair"] == [node_of[1], node_of[0]]
    assert "198.51.100.1" in failure["message"] and "--master-addr" in failure["likely_cause"]
    # Every rank gives up within one op timeout (plus the driver's polling and a loaded machine's slack).
    assert all(f["detected_after_s"] < op_timeout_s + 5 for f in report["failures"]), report["failures"]
    # The cause comes first; rank 0's own time-out waiting for the others is reported after it.
    assert report["failures"][0]["phase"] == "rendezvous"
    assert elapsed < 60 + 30  # the CLI's own bound, plus start-up and tear-down


def test_group_the_cluster_cannot_hold_is_reported_with_free_resources(sim: SimCluster, tmp_path: Path) -> None:
    # Valid config (3 nodes of 2), but the cluster has two such nodes: Ray can never place the group.
    code, reports, _ = _preflight(sim, _config(tmp_path, 2, 3, 2, 3), "--gpu-resource", "gpu2", "--timeout-s", "5")
    assert code == 1
    (failure,) = reports[0]["failures"]
    assert failure["phase"] == "placement" and "placed 0 of 1" in failure["message"]
    assert "gpu2 0" in failure["message"] or "gpu2 2" in failure["message"]  # free GPUs listed per node
    assert failure["detected_after_s"] < 10


def test_cpu_tp2_profile_checks_its_two_workers_on_one_node(sim: SimCluster) -> None:
    code, reports, _ = _preflight(sim, "local-tp2", "--bandwidth-mb", "1")
    assert code == 0, reports
    (report,) = reports
    assert report["world_size"] == 2 and len({p["node"] for p in report["placement"]}) == 1
    assert [link["kind"] for link in report["links"]] == ["all_reduce"]
