"""Placement planning for TP x PP replicas across nodes, and the check of what Ray actually placed.

The bundles themselves come from `engines.placement` (pure, and needed by the app builder in deployments/,
which must not import cluster/); this module adds what only the cluster side needs: one plan per model
for the CLI and the preflight, the rank order vLLM's Ray executor gives the workers it places into those
bundles, and `layout_problems`, which says whether a placement Ray made keeps every TP group inside one
node and puts PP stages on the nodes the plan expects. The config-load checks (shape vs. hardware,
replicas vs. nodes, shortfalls named) live in `configs.schema`, which every entry point runs first.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from configs.schema import ClusterConfig, LLMModelConfig
from engines.placement import ReplicaResources, replica_resources


@dataclass(slots=True, frozen=True)
class ReplicaPlan:
    """How each replica of one model is laid out. Built by `plan_model`; read by the preflight and CLI."""

    model_name: str
    device: str
    tensor_parallel_size: int
    pipeline_parallel_size: int
    num_replicas: int
    resources: ReplicaResources

    @property
    def world_size(self) -> int:
        return len(self.resources.worker_bundles)

    @property
    def spans_nodes(self) -> bool:
        return self.resources.spans_nodes

    def stage_ranks(self, stage: int) -> list[int]:
        """Ranks of PP stage `stage` (vLLM: rank = stage x TP + TP rank)."""
        tp = self.tensor_parallel_size
        return list(range(stage * tp, (stage + 1) * tp))

    def pipeline_links(self) -> list[tuple[int, int]]:
        """(sender, receiver) rank pairs between consecutive stages: TP rank i of stage s sends its
        activations to TP rank i of stage s + 1, so these are the links PP traffic crosses."""
        tp = self.tensor_parallel_size
        return [(s * tp + i, (s + 1) * tp + i) for s in range(self.pipeline_parallel_size - 1) for i in range(tp)]


@dataclass(slots=True, frozen=True)
class WorkerPlacement:
    """Where Ray put one engine worker (or the preflight actor standing in for it)."""

    bundle_index: int
    node_id: str
    node_ip: str

    @property
    def node_label(self) -> str:
        return node_label(self.node_id, self.node_ip)


def node_label(node_id: str, node_ip: str) -> str:
    # Simulated nodes share one IP, so the id prefix is what tells them apart; real nodes differ in both.
    return f"{node_id[:8]} ({node_ip})"


def plan_model(model: LLMModelConfig, gpu_resource: str = "GPU") -> ReplicaPlan:
    """The plan of one configured model; `gpu_resource` as in `engines.placement.replica_resources`."""
    return ReplicaPlan(model.name, model.placement.device, model.engine.tensor_parallel_size,
                       model.engine.pipeline_parallel_size, model.num_replicas,
                       replica_resources(model, gpu_resource))


def plan_cluster(config: ClusterConfig, gpu_resource: str = "GPU") -> list[ReplicaPlan]:
    """One plan per configured model, in config order (called by `warmserve up` and `warmserve preflight`)."""
    return [plan_model(model, gpu_resource) for model in config.models]


def vllm_rank_order(workers: list[WorkerPlacement], driver_node_id: str) -> list[int]:
    """Indices into `workers` in the rank order vLLM's Ray executor assigns: the driver's (replica's) node
    first, then nodes holding fewer workers, then by IP, keeping creation order within a node (a stable
    sort, as in vllm/v1/executor/ray_executor.py). The node id as a last key separates simulated nodes
    sharing an IP; on a real cluster IPs already differ, so the order is exactly vLLM's."""
    per_node = Counter(worker.node_id for worker in workers)

    def key(index: int) -> tuple[bool, int, str, str]:
        w = workers[index]
        return w.node_id != driver_node_id, per_node[w.node_id], w.node_ip, w.node_id

    return sorted(range(len(workers)), key=key)


def layout_problems(plan: ReplicaPlan, ranked: list[WorkerPlacement]) -> list[str]:
    """What is wrong with a placement, as sentences naming stages, ranks and nodes; empty when each TP
    group shares one node and the stages are spread over nodes as the plan's node shares say."""
    problems: list[str] = []
    for stage in range(plan.pipeline_parallel_size):
        ranks = plan.stage_ranks(stage)
        nodes = Counter(ranked[rank].node_label for rank in ranks)
        if len(nodes) > 1:
            where = ", ".join(f"{label}: {count}" for label, count in nodes.items())
            problems.append(f"TP group of stage {stage} (ranks {ranks[0]}-{ranks[-1]}) is split across nodes "
                            f"({where}); Ray's PACK met a node with free GPUs that are not a multiple of "
                            f"tensor_parallel_size={plan.tensor_parallel_size}")
    counts = sorted(Counter(worker.node_id for worker in ranked).values(), reverse=True)
    expected = sorted(plan.resources.node_shares, reverse=True)
    if counts != expected:
        problems.append(f"workers per node are {counts}, the plan expects {expected} "
                        f"({len(expected)} node(s) per replica); placement.nodes/gpus_per_node may not match "
                        "the cluster's nodes")
    return problems


def describe_plan(plan: ReplicaPlan) -> str:
    """One line for the CLI: the shape, the nodes a replica spans, the strategy and the executor."""
    r = plan.resources
    if not r.worker_bundles:
        return f"{plan.model_name}: {plan.num_replicas} replica(s), engine inside the replica (no workers to place)"
    shares = " + ".join(str(share) for share in r.node_shares)
    unit = "GPU" if plan.device == "gpu" else "CPU"
    return (f"{plan.model_name}: {plan.num_replicas} replica(s) x TP={plan.tensor_parallel_size} x "
            f"PP={plan.pipeline_parallel_size} = {plan.world_size} {unit} workers on {len(r.node_shares)} "
            f"node(s) ({shares}), {len(r.bundles)} bundles, {r.strategy}, vLLM executor {r.executor}")
