"""The preflight with NCCL on a real GPU: world size 1 through `warmserve preflight --config gpu-single`, and
two ranks sharing the one GPU (which NCCL may refuse: then the report must say so). Skipped without CUDA.

Like the integration tests, it drives a private one-node Ray cluster (tests/integration/sim_cluster.py) from
child processes, so it never joins the session's shared cluster.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.integration.sim_cluster import SimCluster, json_reports, run_driver, simulated_cluster

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TIMEOUT_S = 300
# Two ranks, each half of GPU 0 (bundles of 0.5 GPU), ranked and checked by the product's own preflight.
TWO_RANKS_ON_ONE_GPU = """
import json, sys
from dataclasses import asdict
import ray
from cluster.placement_plan import ReplicaPlan
from cluster.preflight import PreflightOptions, run_preflight
from engines.placement import ReplicaResources

ray.init(address=sys.argv[1], log_to_driver=False)
resources = ReplicaResources([{"CPU": 1.0, "GPU": 0.5}, {"CPU": 1.0, "GPU": 0.5}], "STRICT_PACK", actor={"CPU": 1.0},
                             worker_bundles=[0, 1], worker={"GPU": 0.5}, node_shares=[2], executor="mp")
plan = ReplicaPlan("shared-gpu", "gpu", 2, 1, 1, resources)
reports = run_preflight(plan, PreflightOptions(timeout_s=120, op_timeout_s=60, bandwidth_bytes=64 * 2**20))
print(json.dumps([asdict(r) for r in reports], indent=2))
"""


@pytest.fixture(scope="module")
def gpu_cluster() -> Iterator[SimCluster]:
    with simulated_cluster([], head_gpus=1) as cluster:
        yield cluster


def test_nccl_world_size_one(gpu_cluster: SimCluster) -> None:
    result = run_driver(gpu_cluster, ["-m", "cluster.cli", "preflight", "--config", "gpu-single", "--address",
                                      gpu_cluster.address, "--json"], TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (report,) = json_reports(result.stdout)
    assert report["ok"] and report["backend"] == "nccl" and report["world_size"] == 1
    print(f"NCCL world 1 on {torch.cuda.get_device_name(0)}: {json.dumps(report['links'])}")


def test_nccl_two_ranks_sharing_one_gpu(gpu_cluster: SimCluster) -> None:
    result = run_driver(gpu_cluster, ["-c", TWO_RANKS_ON_ONE_GPU, gpu_cluster.address], TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    (report,) = json_reports(result.stdout)
    if not report["ok"]:
        # NCCL rejects two ranks on one device; the report must name that, not hang or blame the network.
        causes = " ".join(f["likely_cause"] for f in report["failures"])
        assert "GPU per rank" in causes, report["failures"]
        pytest.skip(f"NCCL refuses two ranks on one GPU: {report['failures'][0]['message'][:200]}")
    assert report["backend"] == "nccl" and [link["kind"] for link in report["links"]] == ["all_reduce"]
    print(f"NCCL 2 ranks on {torch.cuda.get_device_name(0)}: {json.dumps(report['links'])}")
