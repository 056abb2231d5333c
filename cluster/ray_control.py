"""Starting, joining and stopping the Ray cluster that `warmserve up` uses.

A local head is started with the `ray start` CLI so it outlives the `warmserve up` process; a state file
remembers whether we started it, so `warmserve down` stops only what `up` started.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from cluster.cpu_affinity import serving_affinity
from configs.schema import RayConfig

STATE_FILE = Path.home() / ".cache" / "warmserve" / "cluster-state.json"


@dataclass(slots=True)
class ClusterState:
    address: str
    started_head: bool
    http_url: str
    # The marker every process of a head `up` started carries (cluster.session_processes); None when
    # `up` joined a cluster it did not start.
    session: str | None = None

    def save(self) -> None:
        STATE_FILE.parent.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(asdict(self)))

    @staticmethod
    def load() -> ClusterState | None:
        try:
            return ClusterState(**json.loads(STATE_FILE.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    @staticmethod
    def clear() -> None:
        STATE_FILE.unlink(missing_ok=True)


def _ray_cli() -> str:
    beside_python = Path(sys.executable).with_name("ray")
    return str(beside_python) if beside_python.exists() else (shutil.which("ray") or "ray")


def use_token_auth() -> None:
    """Ray 2.5x turns token authentication on for a new head and keeps the token in ~/.ray/auth_token;
    a driver only presents it when the mode is set, so we set it for this process and its children."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def ensure_auth_token() -> None:
    """`ray start --head` in token mode refuses to start without a token (only `ray.init` makes one), so a
    fresh machine gets one first; it is kept in ~/.ray/auth_token and never printed."""
    subprocess.run([_ray_cli(), "get-auth-token", "--generate"], check=True, stdout=subprocess.DEVNULL)


def start_local_head(ray: RayConfig, serve_env: dict[str, str]) -> str:
    """Start a head node (dashboard and job API on the configured host, loopback by default) whose
    processes run with `serve_env` (cluster.serve_environment); returns the address for `ray.init`."""
    ensure_auth_token()
    command = [
        _ray_cli(), "start", "--head",
        f"--num-cpus={ray.num_cpus}",
        f"--dashboard-host={ray.dashboard_host}",
        f"--dashboard-port={ray.dashboard_port}",
        "--disable-usage-stats",
    ]
    # `warmserve up` has checked the machine has these cores (cluster.cpu_affinity.serving_cpus_problem).
    pin = serving_affinity(ray.serving_cpus) if ray.serving_cpus is not None else None
    where = f" on cores {ray.serving_cpus}" if pin is not None else ""
    print(f"[warmserve] starting Ray head{where}: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, check=True, env={**os.environ, **serve_env}, preexec_fn=pin)
    return "auto"


def local_head_is_running() -> bool:
    return subprocess.run([_ray_cli(), "status"], capture_output=True).returncode == 0


def stop_local_head() -> None:
    subprocess.run([_ray_cli(), "stop", "--force"], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
