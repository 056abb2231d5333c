"""Ray resources one LLM replica needs for its TP x PP engine workers, as placement-group bundles.

Bundle 0 is the replica actor itself (Serve's convention); the rest reserve what the engine's worker
processes use. On CPU each worker gets its own cores (vLLM binds one worker per core list). On GPU the
`mp` executor runs all workers inside the replica's node, so the GPUs sit in bundle 0 and the group is
STRICT_PACK; spreading PP stages across nodes is the multi-node planner's job (cluster/).
"""

from __future__ import annotations

from dataclasses import dataclass

from configs.schema import LLMModelConfig

Bundle = dict[str, float]


@dataclass(slots=True, frozen=True)
class ReplicaResources:
    bundles: list[Bundle]
    strategy: str

    @property
    def total(self) -> Bundle:
        out: Bundle = {}
        for bundle in self.bundles:
            for key, value in bundle.items():
                out[key] = out.get(key, 0.0) + value
        return out


def replica_resources(model: LLMModelConfig) -> ReplicaResources:
    engine, placement = model.engine, model.placement
    workers = engine.tensor_parallel_size * engine.pipeline_parallel_size
    replica_bundle: Bundle = {"CPU": model.replica_num_cpus}
    if engine.kind == "fake":
        return ReplicaResources([replica_bundle], "STRICT_PACK")
    if placement.device == "gpu":
        replica_bundle["GPU"] = float(workers)
        replica_bundle["CPU"] += placement.cpus_per_worker * workers
        return ReplicaResources([replica_bundle], "STRICT_PACK")
    worker_bundles = [{"CPU": placement.cpus_per_worker} for _ in range(workers)]
    return ReplicaResources([replica_bundle, *worker_bundles], "STRICT_PACK")
