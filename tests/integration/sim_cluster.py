"""A simulated multi-node Ray cluster in a child process, for the multi-node integration tests.

`ray.cluster_utils.Cluster` starts several raylets on this machine; each is a node of its own, with
custom resources standing in for GPUs (`{"fake_gpu": 2}`). It runs in a child process, and tests drive it
from further child processes (`run_driver`), because the test process may already be the driver of the
session's shared Ray cluster (tests/conftest.py): one process cannot drive two clusters, and
`Cluster.shutdown` resets the hosting process's Ray state. The child also gets a private RAY_TMPDIR, so it
never rewrites /tmp/ray's address file (what `ray status` and `ray.init("auto")` read on this machine),
and random ports with the dashboard off, so it never touches the ports of a cluster already running here.

Run as `python -m tests.integration.sim_cluster SPEC_JSON`: prints `{"address", "node_ids"}` once the
nodes are up, then holds the cluster until its stdin closes.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 180.0


@dataclass(slots=True)
class SimCluster:
    address: str
    # Worker nodes' ids, in the order their resources were given (the head node holds no stand-in GPUs).
    node_ids: list[str]
    # Environment for drivers of this cluster: same private RAY_TMPDIR, same auth mode.
    env: dict[str, str]
    log_path: Path


def _clean_env(tmp_dir: str) -> dict[str, str]:
    # No Serve switches from the session's cluster (they could start an HTTP data plane on shared ports),
    # no address of another cluster.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_") and k != "RAY_ADDRESS"}
    # The checkout first; packages the caller put on PYTHONPATH (a GPU machine's carried Ray) stay visible.
    python_path = os.pathsep.join(p for p in [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")] if p)
    env.update({"RAY_TMPDIR": tmp_dir, "RAY_AUTH_MODE": "token", "PYTHONPATH": python_path,
                "RAY_USAGE_STATS_ENABLED": "0"})
    return env


@contextmanager
def simulated_cluster(nodes: list[dict[str, float]], cpus_per_node: int = 8,
                      head_gpus: int = 0) -> Iterator[SimCluster]:
    """A head node (CPUs, and `head_gpus` real GPUs for the GPU tests) plus one node per entry of `nodes`
    with those custom resources; shut down (every raylet, the private temp dir removed) when the block ends."""
    tmp_dir = tempfile.mkdtemp(prefix="wsim-", dir="/tmp")  # short: Ray's socket paths must stay < 108 bytes
    env = _clean_env(tmp_dir)
    log_path = Path(tmp_dir) / "host.log"
    spec = json.dumps({"nodes": nodes, "cpus_per_node": cpus_per_node, "head_gpus": head_gpus})
    with open(log_path, "w") as log:
        host = subprocess.Popen([sys.executable, "-m", "tests.integration.sim_cluster", spec], cwd=REPO_ROOT, env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        info = _read_ready_line(host, log_path)
        yield SimCluster(info["address"], info["node_ids"], env, log_path)
    finally:
        assert host.stdin is not None
        host.stdin.close()
        try:
            host.wait(timeout=90)
        except subprocess.TimeoutExpired:
            host.kill()  # our own child; its raylets die with it (Ray's reaper fate-shares them)
            host.wait()
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _read_ready_line(host: subprocess.Popen[str], log_path: Path) -> dict:
    assert host.stdout is not None
    selector = selectors.DefaultSelector()
    selector.register(host.stdout, selectors.EVENT_READ)
    if not selector.select(timeout=START_TIMEOUT_S):
        log = log_path.read_text()[-3000:]
        raise TimeoutError(f"simulated cluster not up after {START_TIMEOUT_S:.0f} s; log: {log}")
    line = host.stdout.readline()
    if not line:
        raise RuntimeError(f"simulated cluster exited at start; log: {log_path.read_text()[-3000:]}")
    return json.loads(line)


def run_driver(cluster: SimCluster, args: list[str], timeout_s: float) -> subprocess.CompletedProcess[str]:
    """Run `python ARGS` as a driver of `cluster` (its address is passed by the caller in ARGS)."""
    return subprocess.run([sys.executable, *args], cwd=REPO_ROOT, env=cluster.env, capture_output=True, text=True,
                          timeout=timeout_s)


def json_reports(stdout: str) -> list[dict]:
    """The JSON list `warmserve preflight --json` printed; Ray may print its own log lines around it."""
    reports, _ = json.JSONDecoder().raw_decode(stdout, stdout.index("[\n"))
    return reports


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main(spec_json: str) -> None:
    from ray.cluster_utils import Cluster

    from cluster.ray_control import ensure_auth_token

    spec = json.loads(spec_json)
    ensure_auth_token()  # token mode, as `warmserve up` runs Ray; creates ~/.ray/auth_token only if missing
    head_args = {"num_cpus": 4, "num_gpus": spec["head_gpus"], "include_dashboard": False,
                 "dashboard_agent_listen_port": _free_port(), "metrics_export_port": _free_port()}
    cluster = Cluster(initialize_head=True, head_node_args=head_args)
    node_ids = [cluster.add_node(num_cpus=spec["cpus_per_node"], resources=resources).node_id
                for resources in spec["nodes"]]
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address, "node_ids": node_ids}), flush=True)
    try:
        sys.stdin.read()  # held until the test closes our stdin
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    main(sys.argv[1])
