"""Runs Locust headless on `loadtests/locustfile.py`: one local process, or a master with N workers on this
machine; prints a progress line every few seconds and stops Locust if it overruns its bounds.

Called by `loadtests.run_loadtest` (and `loadtests.compare_targets` through it). Locust's own output goes to
`locust.log` (and `locust-worker-<i>.log`) in the report directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from loadtests.records import RECORD_GLOB
from loadtests.shapes import ShapeSpec
from loadtests.slo import percentile

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
CSV_PREFIX = "locust"
PROGRESS_EVERY_S = 5.0
# Beyond the shape's duration and the stop timeout: Locust's start and report writing.
OVERRUN_GRACE_S = 60.0


@dataclass(slots=True)
class LocustJob:
    host: str  # root URL, without /v1
    out_dir: Path
    scenario_file: Path
    records_dir: Path
    duration_s: float
    tokenizer: str | None = None
    workers: int = 0  # 0: one local process; N >= 1: a master and N worker processes
    stop_timeout_s: float = 30.0
    quiet: bool = False
    shape: ShapeSpec | None = None  # for the progress line's user count
    log_prefix: str = "[loadtest]"
    commands: list[list[str]] = field(default_factory=list)  # filled in by run_locust, for command.txt


@dataclass(slots=True)
class LocustResult:
    exit_code: int
    wall_s: float
    processes: str  # "local runner" or "master + N workers"


def _common_args(job: LocustJob) -> list[str]:
    args = ["-f", str(LOCUSTFILE), "--ws-scenario", str(job.scenario_file), "--ws-records", str(job.records_dir)]
    if job.tokenizer:
        args += ["--ws-tokenizer", job.tokenizer]
    return args


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _master_command(job: LocustJob, port: int | None) -> list[str]:
    command = [sys.executable, "-m", "locust", *_common_args(job), "--host", job.host, "--headless",
               "--only-summary", "--csv", str(job.out_dir / CSV_PREFIX), "--html", str(job.out_dir / "locust.html"),
               "--stop-timeout", f"{job.stop_timeout_s:g}", "--loglevel", "INFO"]
    if port is not None:
        command += ["--master", "--master-bind-host", "127.0.0.1", "--master-bind-port", str(port),
                    "--expect-workers", str(job.workers), "--expect-workers-max-wait", "120"]
    return command


def _worker_command(job: LocustJob, port: int) -> list[str]:
    return [sys.executable, "-m", "locust", *_common_args(job), "--worker", "--master-host", "127.0.0.1",
            "--master-port", str(port), "--loglevel", "INFO"]


class _RecordTail:
    """Reads the records the Locust processes append, incrementally, for the progress line."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[Path, int] = {}
        self.requests = 0
        self.failed = 0

    def recent_ttfts_ms(self) -> list[float]:
        ttfts: list[float] = []
        for path in sorted(self.directory.glob(RECORD_GLOB)):
            with path.open("rb") as handle:
                handle.seek(self.offsets.get(path, 0))
                data = handle.read()
            complete = data[:data.rfind(b"\n") + 1]  # a line still being written waits for the next read
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            for line in complete.decode("utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                self.requests += 1
                self.failed += 0 if record.get("ok") else 1
                if record.get("ttft_ms") is not None:
                    ttfts.append(float(record["ttft_ms"]))
        return ttfts


def _progress(job: LocustJob, tail: _RecordTail, elapsed_s: float) -> str:
    ttfts = tail.recent_ttfts_ms()
    recent = percentile(ttfts, 50.0)
    ttft_text = f", TTFT p50 {recent:.0f} ms (last {PROGRESS_EVERY_S:g} s)" if recent is not None else ""
    users = job.shape.users_at(elapsed_s) if job.shape else 0
    return (f"{job.log_prefix} {elapsed_s:5.0f} / {job.duration_s:g} s: ~{users} users, {tail.requests} requests, "
            f"{tail.failed} failed{ttft_text}")


def run_locust(job: LocustJob) -> LocustResult:
    """Start Locust, wait for it (bounded), return its exit code. Child processes never outlive this call."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    port = _free_port() if job.workers else None
    master_cmd = _master_command(job, port)
    job.commands = [master_cmd]
    logs = [open(job.out_dir / "locust.log", "wb")]  # noqa: SIM115 (closed in finally)
    processes = [subprocess.Popen(master_cmd, cwd=REPO_ROOT, env=env, stdout=logs[0], stderr=subprocess.STDOUT)]
    if port is not None:
        for index in range(job.workers):
            command = _worker_command(job, port)
            job.commands.append(command)
            logs.append(open(job.out_dir / f"locust-worker-{index}.log", "wb"))  # noqa: SIM115
            processes.append(subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=logs[-1],
                                              stderr=subprocess.STDOUT))
    start = time.monotonic()
    deadline = start + job.duration_s + job.stop_timeout_s + OVERRUN_GRACE_S
    next_progress = start + PROGRESS_EVERY_S
    tail = _RecordTail(job.records_dir)
    try:
        while processes[0].poll() is None:
            now = time.monotonic()
            if now > deadline:
                print(f"{job.log_prefix} Locust overran its bounds ({deadline - start:.0f} s): stopping it", flush=True)
                break
            if now >= next_progress and not job.quiet:
                print(_progress(job, tail, now - start), flush=True)
                next_progress = now + PROGRESS_EVERY_S
            time.sleep(0.5)
    finally:
        # The master first (SIGTERM lets Locust write its report), then the workers it told to quit.
        stop_process(processes[0], grace_s=0.0)
        for process in processes[1:]:
            stop_process(process, grace_s=15.0)
        for log in logs:
            log.close()
    code = processes[0].returncode
    label = "local runner" if port is None else f"master + {job.workers} workers"
    return LocustResult(exit_code=code if code is not None else -1, wall_s=time.monotonic() - start,
                        processes=label)


def stop_process(process: subprocess.Popen[bytes], grace_s: float, terminate_wait_s: float = 15) -> None:
    """Wait `grace_s` for a clean exit, then terminate and wait `terminate_wait_s`, then kill."""
    if process.poll() is not None:
        return
    if grace_s > 0:
        try:
            process.wait(timeout=grace_s)
            return
        except subprocess.TimeoutExpired:
            pass
    process.terminate()
    try:
        process.wait(timeout=terminate_wait_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
