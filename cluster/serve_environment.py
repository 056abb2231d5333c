"""The environment Ray Serve's processes need for warmserve's data plane, derived from the config.

Ray Serve reads these switches from the environment of its controller and replica actors, which inherit
the environment of the Ray head (`ray start`, or `ray.init` for the tests' local cluster). So they are set
where the head is started, from the typed config, never read back by warmserve's own components.
"""

from __future__ import annotations

from configs.schema import HttpConfig, RayConfig


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
    if http.data_plane == "proxy":
        # Throughput-optimized mode would otherwise switch direct ingress on behind the classic proxy.
        env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "0"
    return env
