"""Where `warmserve up` runs Ray: a local head it starts (and how that head is tuned) or a cluster it joins."""

from __future__ import annotations

import ipaddress

from pydantic import Field, model_validator

from configs.base import StrictModel
from configs.cpu_sets import parse_cpu_list


def is_loopback(host: str) -> bool:
    """Whether `host` (an IP address or "localhost") is reachable only from the local host."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another hostname: it may resolve to anything
        return False


class RayConfig(StrictModel):
    """How `warmserve up` reaches Ray: start a local head (address None) or join an existing cluster."""

    address: str | None = Field(default=None, description="Ray address to join; None starts a local head")
    # More logical CPUs than cores: on a 2-core CPU host Serve could not otherwise place the ingress and
    # the proxy beside the engine replicas.
    num_cpus: int = Field(default=8, ge=1, le=4096)
    # The dashboard serves Ray's job API, which runs any code it is sent: remote code execution for
    # whoever reaches it (Ray's token auth, which `warmserve up` turns on, is its only other guard).
    # Loopback unless `allow_public_bind`.
    dashboard_host: str = Field(default="127.0.0.1", min_length=1)
    dashboard_port: int = Field(default=8265, ge=1024, le=65535)
    # Opt in to binding the dashboard and its job API beyond loopback: only on a network where every host
    # that can reach it is trusted (docs/operations.md, "Security model").
    allow_public_bind: bool = False
    namespace: str = Field(default="warmserve", min_length=1, max_length=64)
    # Ray Serve's throughput-optimized mode: user code and routers on the replica's own event loop (no
    # cross-thread hop per message), handle calls over gRPC, GC frozen after start. It halved the CPU the
    # ingress and the LLM replica spend per token on a 2-core x86 CPU VM (docs/benchmarks.md).
    serve_throughput_optimized: bool = True
    # How often Serve's controller runs its control loop. Ray's 0.1 s cost 3.5% of a core while idle on a
    # 2-core x86 CPU VM (0.5 s: half that), CPU the engine loses on a 2-core CPU host. The loop reconciles
    # deployment state (replica starts, scaling); routers drop a failed replica on the failed call, not on this loop.
    serve_control_loop_interval_s: float = Field(default=0.5, gt=0, le=10)
    # How often replicas and handles push autoscaling metrics to the controller (only for autoscaled
    # models). Ray's 10 s would add that much to every scaling reaction.
    serve_autoscaling_metrics_push_s: float = Field(default=2.0, gt=0, le=60)
    # Niceness `warmserve up` gives Ray's control-plane daemons (dashboard, agents, monitors) on a head it
    # started; null leaves them at 0. Ray runs its workers, the request path included, at 15, so at 0 its
    # daemons outrank the request path on a 2-core CPU host (cluster/background_priority.py).
    background_niceness: int | None = Field(default=15, ge=0, le=19)
    # Niceness of Ray's workers (ingress and LLM replicas included) on a head `warmserve up` starts
    # (Ray's `RAY_worker_niceness`); None keeps Ray's 15. The engines take `engine.process_niceness`.
    worker_niceness: int | None = Field(default=None, ge=0, le=19)
    # Cores (kernel notation, "1" or "2-7") the head `warmserve up` starts runs on, with everything Ray
    # starts: daemons, proxy, ingress, replicas, engine core. None: all cores. Set, each engine binds its
    # worker to other cores (engine.cpu_threads_bind), so on a small CPU machine the serving path never
    # preempts the forward pass (configs/cpu_sets.py, README "Cores for the engine, cores for the
    # serving path").
    serving_cpus: str | None = Field(default=None, min_length=1, max_length=256)

    @model_validator(mode="after")
    def _serving_cpus_on_own_head(self) -> RayConfig:
        if self.serving_cpus is not None:
            parse_cpu_list(self.serving_cpus)
            if self.address is not None:
                raise ValueError(f"ray.serving_cpus applies to the head `warmserve up` starts; with ray.address="
                                 f"{self.address!r} the cluster is already running (pin its nodes when you "
                                 "start them)")
        return self

    @model_validator(mode="after")
    def _loopback_unless_allowed(self) -> RayConfig:
        if not is_loopback(self.dashboard_host) and not self.allow_public_bind:
            raise ValueError(
                f"ray: dashboard_host={self.dashboard_host!r} is not a loopback address. Ray's job API, served by "
                "the dashboard, runs any code it is sent, so exposing it beyond the local host invites remote code "
                "execution. Set ray.allow_public_bind: true only on a trusted network, behind a firewall "
                "(docs/operations.md, 'Security model')")
        return self
