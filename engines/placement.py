"""Ray resources one LLM replica needs for its TP x PP engine workers, as placement-group bundles.

Pure and Ray-free. It lives in engines/ (not in cluster/, beside the planner) because the app builder in
deployments/ needs the bundles and must not import cluster/; cluster planning and the preflight import
this module instead. Bundle 0 always holds the replica actor (Serve schedules a replica into the first
bundle of its group and captures the actors it creates into the group).

- CPU (TP only, vLLM's `mp` executor): one bundle per worker after the replica's, STRICT_PACK, so each
  worker owns its cores on the replica's node.
- GPU, replica on one node (`mp`): the replica actor holds all its GPUs in bundle 0 and vLLM's worker
  processes inherit them; STRICT_PACK.
- GPU, replica spanning nodes (vLLM's Ray executor): vLLM starts one Ray worker per bundle holding a GPU
  in the replica's placement group and accepts only one GPU per bundle, so there is one bundle per GPU
  worker, with the replica actor merged into the first (as Ray Serve LLM does), and the strategy is
  PACK. PACK fills nodes in turn and vLLM ranks its workers grouped by node (the replica's node first),
  so with `gpus_per_node` a multiple of the TP size (checked at config load) every TP group stays in
  one node and only PP stages cross nodes. PACK is best effort on a fragmented cluster, which is why
  `warmserve preflight` checks the placement Ray actually made before a model loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from configs.schema import EngineConfig, LLMModelConfig, PlacementConfig

Bundle = dict[str, float]
ExecutorBackend = Literal["uni", "mp", "ray"]


@dataclass(slots=True, frozen=True)
class ReplicaResources:
    """What `replica_resources` returns: read by the app builder (Serve options) and cluster planning."""

    bundles: list[Bundle]
    strategy: str
    # What the replica actor itself reserves, a subset of bundles[0] (Serve requires that).
    actor: Bundle
    # Bundle index of each engine worker, in vLLM's creation order (workers of an `mp` engine share the
    # replica's bundle); empty when the engine runs inside the replica (the fake engine).
    worker_bundles: list[int] = field(default_factory=list)
    # What one engine worker takes from its bundle (a preflight actor standing in for it asks the same).
    worker: Bundle = field(default_factory=dict)
    # Engine workers on each node the replica spans, in the order PACK fills them.
    node_shares: list[int] = field(default_factory=lambda: [1])
    executor: ExecutorBackend = "uni"

    @property
    def total(self) -> Bundle:
        out: Bundle = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                out[key] = out.get(key, 0.0) + value
        return out

    @property
    def spans_nodes(self) -> bool:
        return len(self.node_shares) > 1


def executor_backend(engine: EngineConfig, placement: PlacementConfig) -> ExecutorBackend:
    """vLLM's `distributed_executor_backend` for this shape; the engine (`_engine_args`) and
    `replica_resources` both call it so the bundles always match the executor that uses them.

    `ray` only on GPUs when the replica spans nodes (vLLM's Ray executor is GPU-only); `mp` for several
    workers on one node (the only choice on CPU, where vLLM runs TP but not PP); `uni` for one worker.
    """
    workers = engine.tensor_parallel_size * engine.pipeline_parallel_size
    if placement.device == "gpu" and len(placement.replica_node_shares(
            engine.tensor_parallel_size, engine.pipeline_parallel_size)) > 1:
        return "ray"
    return "mp" if workers > 1 else "uni"


def replica_resources(model: LLMModelConfig, gpu_resource: str = "GPU") -> ReplicaResources:
    """Bundles, strategy and actor resources of one replica of `model`.

    Called by the app builder (Serve deployment options), `cluster.placement_plan` and the preflight.
    `gpu_resource` is the Ray resource one GPU worker reserves: "GPU" for vLLM; a custom resource only on
    simulated clusters (tests), where it stands in for GPUs.
    """
    engine, placement = model.engine, model.placement
    tp, pp = engine.tensor_parallel_size, engine.pipeline_parallel_size
    workers = tp * pp
    replica_bundle: Bundle = {"CPU": model.replica_num_cpus}
    if engine.kind == "fake":
        return ReplicaResources([replica_bundle], "STRICT_PACK", actor=dict(replica_bundle), node_shares=[0])
    backend = executor_backend(engine, placement)
    shares = placement.replica_node_shares(tp, pp)
    if placement.device == "cpu":
        worker: Bundle = {"CPU": placement.cpus_per_worker}
        bundles = [replica_bundle, *[dict(worker) for _ in range(workers)]]
        return ReplicaResources(bundles, "STRICT_PACK", actor=dict(replica_bundle),
                                worker_bundles=list(range(1, workers + 1)), worker=worker, node_shares=shares,
                                executor=backend)
    gpu_worker: Bundle = {gpu_resource: 1.0}
    if backend != "ray":
        # One node: the replica actor owns every GPU and vLLM's worker processes inherit them.
        bundle = {"CPU": model.replica_num_cpus + placement.cpus_per_worker * workers, gpu_resource: float(workers)}
        return ReplicaResources([bundle], "STRICT_PACK", actor=dict(bundle), worker_bundles=[0] * workers,
                                worker=gpu_worker, node_shares=shares, executor=backend)
    # vLLM's Ray workers ask for num_cpus=0; the CPU in each bundle keeps room for their host-side threads.
    bundles = [{"CPU": placement.cpus_per_worker, gpu_resource: 1.0} for _ in range(workers)]
    bundles[0]["CPU"] += model.replica_num_cpus
    return ReplicaResources(bundles, "PACK", actor=dict(replica_bundle), worker_bundles=list(range(workers)),
                            worker=gpu_worker, node_shares=shares, executor=backend)
