"""`warmserve preflight [--config ...]`: check the links of every replica's placement group before deploying.

Registered by `cluster.cli.build_parser`, which passes its own connect function in (so this module and
the CLI share one way of joining a cluster). Nothing here imports Ray at module level: the CLI sets Ray's
auth mode before the first `import ray`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING

from configs.loader import ConfigError

if TYPE_CHECKING:
    from cluster.preflight import PreflightOptions

Connect = Callable[[str, str, bool], None]


def add_preflight_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="local", help="config file or shipped profile (default: local)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster to check (default: the config's ray.address, else the local head)")
    parser.add_argument("--model", default=None, help="only this model (default: every model with engine workers)")
    parser.add_argument("--timeout-s", type=float, default=120.0,
                        help="bound on placing the groups and on checking each one (default 120)")
    parser.add_argument("--op-timeout-s", type=float, default=30.0,
                        help="bound on one rendezvous, process-group set-up or collective (default 30)")
    parser.add_argument("--backend", choices=["auto", "nccl", "gloo"], default="auto",
                        help="torch.distributed backend (auto: nccl on GPUs, gloo otherwise)")
    parser.add_argument("--master-addr", default=None,
                        help="address the ranks use to reach rank 0 (default: rank 0's node address in Ray)")
    parser.add_argument("--bandwidth-mb", type=float, default=16.0, help="bulk transfer size in MiB (default 16)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="extra environment for the check's processes, e.g. NCCL_SOCKET_IFNAME=eth1 (repeatable)")
    parser.add_argument("--gpu-resource", default="GPU",
                        help="Ray resource standing for one GPU (a custom one on simulated clusters; selects gloo)")
    parser.add_argument("--json", action="store_true", help="print the reports as JSON")


def _options(args: argparse.Namespace) -> PreflightOptions:
    from cluster.preflight import PreflightOptions

    env = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--env {item!r}: expected KEY=VALUE")
        env[key] = value
    if args.timeout_s <= 0 or args.op_timeout_s <= 0 or args.bandwidth_mb <= 0:
        raise ValueError("--timeout-s, --op-timeout-s and --bandwidth-mb must be > 0")
    return PreflightOptions(timeout_s=args.timeout_s, op_timeout_s=min(args.op_timeout_s, args.timeout_s),
                            backend=args.backend, gpu_resource=args.gpu_resource, master_addr=args.master_addr,
                            bandwidth_bytes=max(4, int(args.bandwidth_mb * 2**20) // 4 * 4), env=env)


def cmd_preflight(args: argparse.Namespace, connect: Connect) -> int:
    """Exit 0 when every check passed, 1 when one failed, 2 for bad input."""
    from cluster.config_check import load_checked_config

    try:
        config = load_checked_config(args.config)
        options = _options(args)
    except (ConfigError, ValueError) as error:
        print(str(error), file=sys.stderr)
        return 2
    from cluster.placement_plan import describe_plan, plan_cluster
    from cluster.preflight import run_preflight
    from cluster.preflight_report import format_report

    plans = [p for p in plan_cluster(config, args.gpu_resource) if p.resources.worker_bundles]
    if args.model is not None:
        plans = [p for p in plans if p.model_name == args.model]
        if not plans:
            print(f"--model {args.model!r}: no such model with engine workers in {args.config}", file=sys.stderr)
            return 2
    if not plans:
        print("[warmserve] preflight: nothing to check (every engine runs inside its replica)")
        return 0
    address = args.address or config.ray.address or "auto"
    # Joining by explicit address ships this checkout to the cluster, as `warmserve up` does.
    connect(address, config.ray.namespace, address != "auto")
    reports = []
    for plan in plans:
        if not args.json:
            print(f"[warmserve] preflight: {describe_plan(plan)}", flush=True)
        for report in run_preflight(plan, options):
            reports.append(report)
            if not args.json:
                print(format_report(report), flush=True)
    if args.json:
        print(json.dumps([asdict(report) for report in reports], indent=2))
    return 0 if reports and all(report.ok for report in reports) else 1
