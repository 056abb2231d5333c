"""What a preflight found for one replica's placement group, and its text form for the terminal.

Built by `cluster.preflight.run_preflight`; printed by `warmserve preflight` and by `warmserve up` before a
multi-node deploy, or written as JSON (`dataclasses.asdict`) with `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class RankPlacement:
    rank: int
    bundle_index: int
    node: str
    stage: int


@dataclass(slots=True)
class LinkResult:
    """A measured TP group (`all_reduce`, bus bandwidth) or pipeline link (`send_recv`, sender first)."""

    kind: str
    ranks: list[int]
    nodes: list[str]
    latency_us: float
    bandwidth_gbps: float
    size_bytes: int


@dataclass(slots=True)
class PreflightFailure:
    phase: str
    # The two ends: the failing ranks' node first; both the same node for a failure inside one node.
    node_pair: tuple[str, str]
    ranks: list[int]
    message: str
    likely_cause: str
    # Seconds from the start of the checks until this failure came back to the driver.
    detected_after_s: float


@dataclass(slots=True)
class PreflightReport:
    model_name: str
    replica: int
    backend: str
    world_size: int
    tensor_parallel_size: int
    pipeline_parallel_size: int
    ok: bool = False
    elapsed_s: float = 0.0
    master: str = ""
    placement: list[RankPlacement] = field(default_factory=list)
    layout_problems: list[str] = field(default_factory=list)
    links: list[LinkResult] = field(default_factory=list)
    failures: list[PreflightFailure] = field(default_factory=list)
    node_env: dict[str, dict[str, str]] = field(default_factory=dict)


def _ranks(ranks: list[int]) -> str:
    if len(ranks) > 1 and ranks == list(range(ranks[0], ranks[-1] + 1)):
        return f"{ranks[0]}-{ranks[-1]}"
    return ",".join(str(rank) for rank in ranks)


def format_report(report: PreflightReport) -> str:
    """Human-readable lines: placement per node, each link's latency and bandwidth, failures with causes."""
    head = (f"preflight {report.model_name} replica {report.replica}: TP={report.tensor_parallel_size} x "
            f"PP={report.pipeline_parallel_size} = {report.world_size} ranks, backend {report.backend}")
    lines = [head + (f", rendezvous {report.master}" if report.master else "")]
    by_node: dict[str, list[RankPlacement]] = {}
    for placed in report.placement:
        by_node.setdefault(placed.node, []).append(placed)
    for node, placed in by_node.items():
        stages = sorted({p.stage for p in placed})
        env = report.node_env.get(node, {})
        env_text = (" " + " ".join(f"{k}={v}" for k, v in sorted(env.items()))) if env else ""
        lines.append(f"  node {node}: ranks {_ranks([p.rank for p in placed])} (stage "
                     f"{', '.join(map(str, stages))}){env_text}")
    for problem in report.layout_problems:
        lines.append(f"  LAYOUT: {problem}")
    for link in report.links:
        if link.kind == "all_reduce":
            what = f"TP all-reduce ranks {_ranks(link.ranks)} on {link.nodes[0]}"
            rate = f"bus bandwidth {link.bandwidth_gbps:.2f} GB/s"
        else:
            what = f"PP link rank {link.ranks[0]} -> {link.ranks[1]}: {link.nodes[0]} -> {link.nodes[-1]}"
            rate = f"bandwidth {link.bandwidth_gbps:.2f} GB/s"
        lines.append(f"  {what}: latency {link.latency_us:.0f} us, {rate} ({link.size_bytes / 2**20:.0f} MiB)")
    for failure in report.failures:
        a, b = failure.node_pair
        pair = f"node {a}" if a == b else f"node {a} -> node {b}"
        lines.append(f"  FAILED {failure.phase} ({pair}, ranks {_ranks(failure.ranks)}, after "
                     f"{failure.detected_after_s:.1f} s): {failure.message}")
        lines.append(f"    likely cause: {failure.likely_cause}")
    lines.append(f"  {'ok' if report.ok else 'FAILED'} in {report.elapsed_s:.1f} s")
    return "\n".join(lines)
