"""The preflight: real torch.distributed across each replica's placement group, before a model loads.

`run_preflight` places every replica's group exactly as Serve will (same bundles, same strategy, all at
once so they land on different nodes as the real replicas would), puts one `PreflightWorker` actor in
each engine-worker bundle with the resources that worker will ask for, ranks them as vLLM's Ray executor
will, checks the layout (TP groups inside a node, stages on the planned nodes), then runs the checks of
`cluster.preflight_worker` with NCCL on GPUs or gloo elsewhere. Everything is bounded: placement and each
group's checks by `timeout_s`, each rendezvous/collective by `op_timeout_s`; a failure or a hang comes
back naming the node pair, the ranks and the likely cause (`cluster.preflight_diagnosis`).

Called by `warmserve preflight` (cluster.preflight_cmd) and by `warmserve up` before deploying a model
whose replicas span nodes (`preflight_before_deploy`). Needs a connected Ray driver (`ray.init`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import PlacementGroup, placement_group, placement_group_table, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from cluster.placement_plan import (ReplicaPlan, WorkerPlacement, describe_plan, layout_problems, node_label,
                                    plan_cluster, vllm_rank_order)
from cluster.preflight_diagnosis import likely_cause
from cluster.preflight_report import LinkResult, PreflightFailure, PreflightReport, RankPlacement, format_report
from cluster.preflight_worker import CheckSpec, PreflightWorker, RankOutcome, WorkerIdentity
from configs.schema import ClusterConfig

_POLL_S = 0.5
_PROGRESS_POLL_S = 2.0
# Report order of failures by step: causes before their consequences.
_PHASE_ORDER = {"actor": 0, "rendezvous": 1, "init": 2}


@dataclass(slots=True)
class PreflightOptions:
    """Bounds and knobs of one preflight (CLI flags in cluster.preflight_cmd)."""

    # Bound on placing the groups, and separately on checking each group (actor start included).
    timeout_s: float = 120.0
    # Bound on one rendezvous, process-group set-up or collective.
    op_timeout_s: float = 30.0
    backend: str = "auto"  # "auto" = nccl on GPUs, gloo otherwise
    gpu_resource: str = "GPU"  # as in engines.placement.replica_resources
    # The address ranks use to reach rank 0; None = rank 0's node address as Ray knows it.
    master_addr: str | None = None
    bandwidth_bytes: int = 16 * 2**20
    latency_iters: int = 20
    bandwidth_iters: int = 3
    # Extra environment for the preflight's actors, to try e.g. NCCL_SOCKET_IFNAME before setting it on nodes.
    env: dict[str, str] = field(default_factory=dict)


def resolve_backend(plan: ReplicaPlan, options: PreflightOptions) -> str:
    if options.backend != "auto":
        return options.backend
    return "nccl" if plan.device == "gpu" and options.gpu_resource == "GPU" else "gloo"


def run_preflight(plan: ReplicaPlan, options: PreflightOptions) -> list[PreflightReport]:
    """One report per replica of `plan` (a single placement report if the groups cannot be placed)."""
    r = plan.resources
    backend = resolve_backend(plan, options)
    groups = [placement_group([dict(b) for b in r.bundles], strategy=r.strategy) for _ in range(plan.num_replicas)]
    start = time.monotonic()
    try:
        ready, _ = ray.wait([g.ready() for g in groups], num_returns=len(groups), timeout=options.timeout_s)
        if len(ready) < len(groups):
            return [_placement_failure(plan, backend, len(ready), time.monotonic() - start)]
        return [_check_group(plan, group, replica, backend, options) for replica, group in enumerate(groups)]
    finally:
        for group in groups:
            remove_placement_group(group)


def _placement_failure(plan: ReplicaPlan, backend: str, placed: int, elapsed_s: float) -> PreflightReport:
    report = _empty_report(plan, 0, backend)
    message = (f"placed {placed} of {plan.num_replicas} replica group(s) within {elapsed_s:.0f} s; each needs "
               f"{_bundle_summary(plan)} ({plan.resources.strategy}); free per node: {_free_per_node()}")
    report.failures.append(PreflightFailure("placement", ("cluster", "cluster"), [], message,
                                            likely_cause("placement", message, backend, True), elapsed_s))
    report.elapsed_s = elapsed_s
    return report


def _check_group(plan: ReplicaPlan, group: PlacementGroup, replica: int, backend: str,
                 options: PreflightOptions) -> PreflightReport:
    start = time.monotonic()
    deadline = start + options.timeout_s
    report = _empty_report(plan, replica, backend)
    bundle_nodes = placement_group_table(group).get("bundles_to_node_id", {})
    actors = [_start_worker(plan, group, bundle, options) for bundle in plan.resources.worker_bundles]
    try:
        identities = _identities(plan, actors, bundle_nodes, report, deadline, start)
        if identities is not None:
            _run_checks(plan, actors, identities, bundle_nodes, report, options, deadline)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    report.ok = not report.failures and not report.layout_problems
    report.elapsed_s = time.monotonic() - start
    return report


def _start_worker(plan: ReplicaPlan, group: PlacementGroup, bundle: int, options: PreflightOptions) -> Any:
    resources = dict(plan.resources.worker)
    actor_options: dict[str, Any] = {
        "num_cpus": resources.pop("CPU", 0.0), "num_gpus": resources.pop("GPU", 0.0), "max_concurrency": 2,
        "scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle),
    }
    if resources:
        actor_options["resources"] = resources
    if options.env:
        actor_options["runtime_env"] = {"env_vars": dict(options.env)}
    return ray.remote(PreflightWorker).options(**actor_options).remote()


def _identities(plan: ReplicaPlan, actors: list[Any], bundle_nodes: dict[int, str], report: PreflightReport,
                deadline: float, start: float) -> list[WorkerIdentity] | None:
    refs = [actor.identity.remote() for actor in actors]
    ray.wait(refs, num_returns=len(refs), timeout=max(1.0, deadline - time.monotonic()))
    identities: list[WorkerIdentity] = []
    for index, ref in enumerate(refs):
        bundle = plan.resources.worker_bundles[index]
        node = _bundle_node_label(bundle_nodes.get(bundle))
        try:
            identities.append(ray.get(ref, timeout=0.1))
        except Exception as error:
            message = f"worker for bundle {bundle} did not start: {type(error).__name__}: {error}"[:2000]
            report.failures.append(PreflightFailure("actor start", (node, node), [index], message,
                                                    likely_cause("actor start", message, report.backend, True),
                                                    time.monotonic() - start))
    return identities if len(identities) == len(actors) else None


def _run_checks(plan: ReplicaPlan, actors: list[Any], identities: list[WorkerIdentity], bundle_nodes: dict[int, str],
                report: PreflightReport, options: PreflightOptions, deadline: float) -> None:
    placements = [WorkerPlacement(bundle, ident.node_id, ident.node_ip)
                  for bundle, ident in zip(plan.resources.worker_bundles, identities)]
    driver_node = bundle_nodes.get(0, placements[0].node_id)
    by_rank = vllm_rank_order(placements, driver_node)  # rank -> index into actors / identities
    ranked = [placements[index] for index in by_rank]
    tp = plan.tensor_parallel_size
    report.placement = [RankPlacement(rank, p.bundle_index, p.node_label, rank // tp) for rank, p in enumerate(ranked)]
    report.layout_problems = layout_problems(plan, ranked)
    for index, ident in enumerate(identities):
        report.node_env.setdefault(placements[index].node_label, ident.env)
    rank_nodes = [p.node_label for p in ranked]
    master = actors[by_rank[0]]
    try:
        port = ray.get(master.open_rendezvous.remote(plan.world_size, options.op_timeout_s),
                       timeout=max(1.0, deadline - time.monotonic()))
    except Exception as error:  # torch missing or broken on rank 0's node, the actor gone, or the bound hit
        message = f"rank 0 could not open the rendezvous: {type(error).__name__}: {error}"[:2000]
        report.failures.append(PreflightFailure("actor rendezvous", (rank_nodes[0], rank_nodes[0]), [0], message,
                                                likely_cause("actor rendezvous", message, report.backend, True),
                                                time.monotonic() - deadline + options.timeout_s))
        return
    address = options.master_addr or ranked[0].node_ip
    report.master = f"{address}:{port}"
    specs = [CheckSpec(report.backend, address, port, rank, plan.world_size, tp, plan.pipeline_links(),
                       options.op_timeout_s, options.latency_iters, options.bandwidth_bytes, options.bandwidth_iters)
             for rank in range(plan.world_size)]
    started = time.monotonic()
    outcomes = _await_outcomes({rank: actors[by_rank[rank]] for rank in range(plan.world_size)}, specs,
                               deadline, started)
    report.links = _links(outcomes, rank_nodes)
    report.failures.extend(_failures(outcomes, rank_nodes, report.backend))


def _await_outcomes(actors: dict[int, Any], specs: list[CheckSpec], deadline: float,
                    started: float) -> dict[int, tuple[RankOutcome, float]]:
    """Every rank's outcome and when it came back; a rank that died or is still busy at the deadline gets
    an outcome built from the last step it reported (so a hang still names the peers it waited for)."""
    pending = {actors[spec.rank].run.remote(spec): spec.rank for spec in specs}
    last: dict[int, tuple[str, list[int]]] = {rank: ("rendezvous", [0]) for rank in actors}
    outcomes: dict[int, tuple[RankOutcome, float]] = {}
    next_poll = time.monotonic() + _PROGRESS_POLL_S
    while pending and time.monotonic() < deadline:
        done, _ = ray.wait(list(pending), num_returns=len(pending), timeout=_POLL_S)
        for ref in done:
            rank = pending.pop(ref)
            try:
                outcome = ray.get(ref)
            except Exception as error:  # the actor died (NCCL abort, OOM, node gone)
                phase, peers = last[rank]
                outcome = RankOutcome(rank, False, f"actor died during {phase}", peers,
                                      f"{type(error).__name__}: {error}"[:2000], time.monotonic() - started)
            outcomes[rank] = (outcome, time.monotonic() - started)
        if not pending or time.monotonic() < next_poll:
            continue
        # Not every iteration: progress calls cost the ranks CPU while they are measuring.
        next_poll = time.monotonic() + _PROGRESS_POLL_S
        polls = {actors[rank].progress.remote(): rank for rank in pending.values()}
        answered, _ = ray.wait(list(polls), num_returns=len(polls), timeout=_POLL_S)
        for ref in answered:
            try:
                phase, peers, _ = ray.get(ref)
                last[polls[ref]] = (phase, peers)
            except Exception:  # dead: its run() ref reports that
                pass
    for rank in pending.values():
        phase, peers = last[rank]
        message = f"timed out: no answer within the {deadline - started:.0f} s left for the checks (in {phase})"
        outcomes[rank] = (RankOutcome(rank, False, phase, peers, message, time.monotonic() - started),
                          time.monotonic() - started)
    return outcomes


def _links(outcomes: dict[int, tuple[RankOutcome, float]], rank_nodes: list[str]) -> list[LinkResult]:
    # Every member of a TP group measures its all-reduce; the slowest member's view is the group's.
    merged: dict[tuple[str, tuple[int, ...]], LinkResult] = {}
    for outcome, _ in outcomes.values():
        for m in outcome.measurements:
            key = (m.kind, tuple(m.ranks))
            nodes = list(dict.fromkeys(rank_nodes[rank] for rank in m.ranks))
            seen = merged.get(key)
            if seen is None:
                merged[key] = LinkResult(m.kind, list(m.ranks), nodes, m.latency_us, m.bandwidth_gbps, m.size_bytes)
            else:
                seen.latency_us = max(seen.latency_us, m.latency_us)
                seen.bandwidth_gbps = min(seen.bandwidth_gbps, m.bandwidth_gbps)
    return sorted(merged.values(), key=lambda link: (link.kind, link.ranks))


def _failures(outcomes: dict[int, tuple[RankOutcome, float]], rank_nodes: list[str],
              backend: str) -> list[PreflightFailure]:
    failed = sorted(rank for rank, (outcome, _) in outcomes.items() if not outcome.ok)
    merged: dict[tuple[str, tuple[str, str]], PreflightFailure] = {}
    for rank in failed:
        outcome, detected = outcomes[rank]
        pair = _failure_pair(outcome, rank_nodes, failed)
        key = (outcome.phase, pair)
        if key in merged:
            merged[key].ranks.append(rank)
            merged[key].detected_after_s = min(merged[key].detected_after_s, detected)
            continue
        message = outcome.error or "failed"
        merged[key] = PreflightFailure(outcome.phase, pair, [rank], message,
                                       likely_cause(outcome.phase, message, backend, pair[0] == pair[1]), detected)
    # Causes first: a rank that cannot reach the rendezvous makes the others time out waiting for it.
    return sorted(merged.values(), key=lambda f: (_PHASE_ORDER.get(f.phase.split(" ")[0], 3), f.detected_after_s))



def _failure_pair(outcome: RankOutcome, rank_nodes: list[str], failed: list[int]) -> tuple[str, str]:
    """The two nodes a failure sits between: the rank's own, and the far end of what it waited for."""
    me = rank_nodes[outcome.rank]
    phase = outcome.phase
    # Set-up steps (also when the actor died in one): everyone meets rank 0's node first.
    if "rendezvous" in phase or "init " in phase:
        if outcome.rank != 0:
            return me, rank_nodes[0]
        # Rank 0 fails when the others never arrive: the far end is a node whose ranks failed too.
        far = [rank_nodes[r] for r in failed if rank_nodes[r] != me]
        return me, far[0] if far else me
    far = [rank_nodes[p] for p in outcome.peers if rank_nodes[p] != me]
    return me, far[0] if far else me


def _empty_report(plan: ReplicaPlan, replica: int, backend: str) -> PreflightReport:
    return PreflightReport(plan.model_name, replica, backend, plan.world_size, plan.tensor_parallel_size,
                           plan.pipeline_parallel_size)


def _bundle_node_label(node_id: str | None) -> str:
    if node_id is None:
        return "unplaced"
    for node in ray.nodes():
        if node.get("NodeID") == node_id:
            return node_label(node_id, node.get("NodeManagerAddress", "?"))
    return node_label(node_id, "?")


def _bundle_summary(plan: ReplicaPlan) -> str:
    counts: dict[str, int] = {}
    for bundle in plan.resources.bundles:
        text = "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(bundle.items())) + "}"
        counts[text] = counts.get(text, 0) + 1
    return " + ".join(f"{n} x {text}" for text, n in counts.items())


def _free_per_node() -> str:
    try:
        # Private in Ray, and what vLLM itself reads for the same purpose (vllm/v1/executor/ray_utils.py).
        from ray._private.state import available_resources_per_node

        free = available_resources_per_node()
    except Exception:
        return f"(per-node view unavailable) cluster-wide {ray.available_resources()}"
    labels = {n["NodeID"]: node_label(n["NodeID"], n.get("NodeManagerAddress", "?")) for n in ray.nodes() if n["Alive"]}
    parts = []
    for node_id, resources in free.items():
        # Placement-group bookkeeping and memory are noise here; CPUs, GPUs and custom resources are the point.
        shown = {k: v for k, v in resources.items() if not k.startswith(("node:", "memory", "object_store"))
                 and "_group_" not in k}
        amounts = ", ".join(f"{k} {v:g}" for k, v in sorted(shown.items()))
        parts.append(f"{labels.get(node_id, node_id[:8])}: {amounts}")
    return "; ".join(parts) or "no alive nodes"


def preflight_before_deploy(config: ClusterConfig, options: PreflightOptions | None = None) -> bool:
    """Called by `warmserve up` after connecting, before deploying: checks the models whose replicas span
    nodes (nothing to do otherwise), prints each report, and returns whether every check passed."""
    plans = [plan for plan in plan_cluster(config) if plan.spans_nodes]
    if not plans:
        return True
    ok = True
    for plan in plans:
        print(f"[warmserve] preflight: {describe_plan(plan)}", flush=True)
        for report in run_preflight(plan, options or PreflightOptions()):
            print(format_report(report), flush=True)
            ok = ok and report.ok
    return ok
