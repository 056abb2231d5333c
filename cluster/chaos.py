"""`warmserve chaos`: inject real faults under load and check every request afterwards.

It runs the same greedy streaming workload twice against the running cluster: once undisturbed (the
reference), once with faults (engine SIGKILL, replica actor `ray.kill`, engine stall) injected into a
random replica at random moments mid-run. A request counts as lost if it did not end with HTTP 200 and a
finish reason, as mismatched if its text differs from the reference. Exit status 1 if either happened.

`--burst N` adds N requests sent all at once, right after the first fault (or at the start with
`--faults none`): each must be answered or refused at once with Retry-After, and the report gives the time
to refusal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cluster.chaos_burst import BurstOutcome, send_burst
from cluster.chaos_faults import FAULT_KINDS, FaultKind, inject
from cluster.chaos_load import RequestOutcome, run_load

# Faults land between these fractions of the reference run's duration: after streams have started, well
# before they end, so they hit requests mid-stream.
FAULT_WINDOW = (0.2, 0.6)
# `--long-streams`: few streams that run for minutes, every one to `max_tokens` (EOS ignored), with the
# fault early, so each resumed stream goes on far longer after it than any failover timeout or window.
LONG_STREAMS = {"requests": 12, "concurrency": 12, "max_tokens": 1500}
LONG_FAULT_WINDOW = (0.05, 0.1)
REFUSAL_STATUSES = (429, 503)
BURST_MAX_TOKENS = 8


@dataclass(slots=True)
class ChaosReport:
    requests: int
    faults: list[str] = field(default_factory=list)
    lost: list[int] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    # For each mismatched request: both texts and what failover did to it, so a failure can be told apart
    # (a resumed stream that diverged, or an undisturbed one that batching alone changed).
    mismatch_details: list[str] = field(default_factory=list)
    resumed: int = 0
    retried: int = 0
    reference_s: float = 0.0
    faulted_s: float = 0.0
    # `--burst`: requests sent all at once right after the first fault. Each must be answered or refused
    # (429/503 with Retry-After) promptly; `burst_failed` counts any other end.
    burst: int = 0
    burst_refused_s: list[float] = field(default_factory=list)
    burst_failed: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.lost and not self.mismatched and not self.burst_failed

    def summary(self) -> str:
        text = (f"{self.requests} requests, faults: {'; '.join(self.faults) or 'none'}\n"
                f"lost {len(self.lost)}, text differs {len(self.mismatched)}, resumed {self.resumed}, "
                f"retried {self.retried}; run {self.faulted_s:.1f} s (undisturbed {self.reference_s:.1f} s)")
        if self.burst:
            refused = sorted(self.burst_refused_s)
            timing = (f"; time to refusal p50 {_percentile(refused, 0.5) * 1000:.0f} ms, p99 "
                      f"{_percentile(refused, 0.99) * 1000:.0f} ms" if refused else "")
            text += (f"\nburst of {self.burst}: {self.burst - len(refused) - len(self.burst_failed)} answered, "
                     f"{len(refused)} refused{timing}, {len(self.burst_failed)} failed otherwise")
        return text + "".join(f"\n  {detail}" for detail in [*self.mismatch_details, *self.burst_failed[:5]])


def _percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def judge_burst(outcomes: list[BurstOutcome], report: ChaosReport) -> None:
    """A burst request must end with an answer or a refusal that says when to retry."""
    report.burst = len(outcomes)
    for outcome in outcomes:
        if outcome.status in REFUSAL_STATUSES and outcome.retry_after is not None:
            report.burst_refused_s.append(outcome.seconds)
        elif not outcome.completed:
            report.burst_failed.append(f"burst #{outcome.index}: HTTP {outcome.status} after "
                                       f"{outcome.seconds:.1f} s: {(outcome.error or '')[:200]}")


def compare(reference: list[RequestOutcome], faulted: list[RequestOutcome], report: ChaosReport) -> None:
    for ref, got in zip(reference, faulted, strict=True):
        if not got.ok:
            report.lost.append(got.index)
        elif got.text != ref.text:
            report.mismatched.append(got.index)
            report.mismatch_details.append(
                f"#{got.index} (resumed {got.resumed}, retried {got.retried}, replica {got.replica}): "
                f"reference {ref.text!r} != {got.text!r}")
        report.resumed += got.resumed
        report.retried += got.retried


async def run_chaos(base_url: str, model: str, app: str, deployment: str, faults: list[FaultKind],
                    requests: int, concurrency: int, max_tokens: int, seed: int = 0,
                    stall_s: float = 10.0, long_streams: bool = False,
                    burst: int = 0, burst_max_tokens: int = BURST_MAX_TOKENS,
                    ) -> tuple[ChaosReport, list[RequestOutcome]]:
    report = ChaosReport(requests)
    window = LONG_FAULT_WINDOW if long_streams else FAULT_WINDOW
    loop = asyncio.get_running_loop()
    start = loop.time()
    reference = await run_load(base_url, model, requests, concurrency, max_tokens, ignore_eos=long_streams)
    report.reference_s = loop.time() - start
    broken = [o for o in reference if not o.ok]
    if broken:
        raise RuntimeError(f"the undisturbed run already failed {len(broken)} requests, e.g. {broken[0]}")
    rng = random.Random(seed)
    start = loop.time()
    load = asyncio.create_task(run_load(base_url, model, requests, concurrency, max_tokens,
                                        ignore_eos=long_streams))
    burst_load: asyncio.Task[list[BurstOutcome]] | None = None

    def start_burst() -> asyncio.Task[list[BurstOutcome]]:
        return asyncio.create_task(send_burst(base_url, model, burst, burst_max_tokens, first_index=requests))

    if burst and not faults:  # overload alone
        burst_load = start_burst()
    for kind in faults:
        at = start + rng.uniform(*window) * report.reference_s
        await asyncio.sleep(max(0.0, at - loop.time()))
        report.faults.append(await asyncio.to_thread(inject, kind, app, deployment, rng, stall_s))
        print(f"[warmserve] chaos: {report.faults[-1]}", file=sys.stderr)
        if burst and burst_load is None:  # all at once, while a replica is down
            burst_load = start_burst()
    faulted = await load
    if burst_load is not None:
        judge_burst(await burst_load, report)
    report.faulted_s = loop.time() - start
    compare(reference, faulted, report)
    return report, faulted


def cmd_chaos(argv: list[str]) -> int:
    from cluster.config_check import load_checked_config
    from cluster.ray_control import use_token_auth
    from deployments.app_builder import APP_NAME, llm_deployment_name

    parser = argparse.ArgumentParser(prog="warmserve chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="local", help="profile or file the cluster was started with")
    parser.add_argument("--url", default=None, help="OpenAI base URL (default: from the config's http)")
    parser.add_argument("--faults", default="engine_kill",
                        help=f"comma-separated, in order: {', '.join(FAULT_KINDS)}; or none (with --burst)")
    parser.add_argument("--requests", type=int, default=None, help="default 50 (12 with --long-streams)")
    parser.add_argument("--concurrency", type=int, default=None, help="default 50 (12 with --long-streams)")
    parser.add_argument("--max-tokens", type=int, default=None, help="default 48 (1500 with --long-streams)")
    parser.add_argument("--burst", type=int, default=0,
                        help="also send this many requests at once right after the first fault; each must be "
                             "answered or refused with Retry-After (the report gives the time to refusal)")
    parser.add_argument("--burst-max-tokens", type=int, default=BURST_MAX_TOKENS,
                        help=f"max_tokens of each burst request (default {BURST_MAX_TOKENS})")
    parser.add_argument("--long-streams", action="store_true",
                        help="streams that run for minutes to max_tokens, the fault early: each resumed stream "
                             "must still arrive complete and unchanged")
    parser.add_argument("--stall-s", type=float, default=10.0, help="how long an engine_stall lasts")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="write the report and every outcome here")
    args = parser.parse_args(argv)
    shape = LONG_STREAMS if args.long_streams else {"requests": 50, "concurrency": 50, "max_tokens": 48}
    for name, default in shape.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    faults = [f.strip() for f in args.faults.split(",") if f.strip() and f.strip() != "none"]
    if not faults and not args.burst:
        parser.error("--faults none needs --burst")
    unknown = sorted(set(faults) - set(FAULT_KINDS))
    if unknown:
        parser.error(f"unknown fault(s) {unknown}; choose from {', '.join(FAULT_KINDS)}")
    config = load_checked_config(args.config)
    model = config.models[0]
    url = args.url or f"http://{config.http.host}:{config.http.port}/v1"
    from engines.platform import resolve_dtype

    if resolve_dtype(model.engine.dtype, model.placement.device) != "float32":
        print(f"[warmserve] chaos: WARNING: {model.name} does not run in float32 here, so its greedy text also "
              "changes with batch composition; 'text differs' then counts streams no fault touched "
              "(docs/reliability.md)", file=sys.stderr)

    import ray

    use_token_auth()
    ray.init(address="auto", namespace=config.ray.namespace, log_to_driver=False)
    report, outcomes = asyncio.run(run_chaos(url, model.name, APP_NAME, llm_deployment_name(model.name),
                                             faults, args.requests, args.concurrency, args.max_tokens, args.seed,
                                             args.stall_s, args.long_streams, args.burst,  # type: ignore[arg-type]
                                             args.burst_max_tokens))
    print(report.summary())
    if args.json is not None:
        args.json.write_text(json.dumps({"report": asdict(report), "outcomes": [asdict(o) for o in outcomes]},
                                        indent=1))
    return 0 if report.passed else 1
