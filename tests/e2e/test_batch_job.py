"""The batch job as a user runs it: `ray job submit -- python -m cluster.batch` on a real local Ray cluster, real
vLLM on CPU (SmolLM2), real Ray Data; a job whose engine worker is SIGKILLed and which is then stopped
(`ray job stop`) mid-run, resubmitted and finished; the answers compared with the online endpoint of a
Serve app on the same cluster.

The module starts its own Ray head (GCS 6391, dashboard/job API 8275, Serve HTTP 8323 by default) in a
session of its own, and stops exactly that head at the end by killing that session's processes (never
`ray stop`, which would stop every Ray on the machine). One engine at a time runs the batch job; the Serve
app has one replica, deployed at the start so its engine loads while the first job's does.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from cluster.serve_environment import serve_environment
from configs.loader import PROFILES_DIR, parse_config
from loadtests.batch_inputs import batch_lines, write_jsonl, write_parquet
from loadtests.private_ray_head import HeadPorts, PrivateHead, head_environment, ray_bin

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
GCS_PORT = 6391
CLIENT_SERVER_PORT = 6392
DASHBOARD_PORT = 8275
AGENT_PORT = 52375
SERVE_PORT = int(os.environ.get("WARMSERVE_BATCH_TEST_PORT", "8323"))
DASHBOARD = f"http://127.0.0.1:{DASHBOARD_PORT}"
REQUESTS = 200
MAX_TOKENS = 12
SHARD_SIZE = 16
JOB_A_SHARDS = ("--shard-size", "4", "--shards-in-flight", "1")  # see offline_run
TERMINAL = ("SUCCEEDED", "STOPPED", "FAILED")
MALFORMED = ['{"custom_id": "broken", "url": ', "[1, 2, 3]",
             json.dumps({"custom_id": "no-url", "method": "POST", "body": {}}),
             json.dumps({"custom_id": "req-00007", "method": "POST", "url": "/v1/completions", "body": {}}),
             json.dumps({"custom_id": "get", "method": "GET", "url": "/v1/completions", "body": {}})]
MALFORMED_CODES = ["invalid_json", "invalid_line", "invalid_url", "duplicate_custom_id", "invalid_method"]
BAD_MAX_TOKENS_ID = "req-00011"
TIMEOUT_S = 600


@dataclass(slots=True)
class Head:
    ray: PrivateHead
    config_path: Path
    work: Path

    def processes(self) -> list[psutil.Process]:
        return self.ray.processes()

    def cli(self, *args: str, timeout_s: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return self.ray.cli(*args, timeout_s=timeout_s)

    def submit(self, *batch_args: str, wait: bool = True) -> tuple[str, subprocess.CompletedProcess[str]]:
        job_id = f"batch-e2e-{uuid.uuid4().hex[:8]}"
        command = [ray_bin("ray"), "job", "submit", "--address", DASHBOARD, "--submission-id", job_id,
                   "--working-dir", str(REPO_ROOT), *([] if wait else ["--no-wait"]), "--",
                   "python", "-m", "cluster.batch", "--config", str(self.config_path), *batch_args]
        return job_id, self.cli(*command)

    def status(self, job_id: str) -> str:
        """The job's status word, read from what `ray job status` prints for each state. A call that does not
        answer in time (two engines loading on a loaded host can starve the dashboard) is an unknown status
        for this poll, not a failure: the caller's own deadline decides."""
        try:
            out = self.cli(ray_bin("ray"), "job", "status", "--address", DASHBOARD, job_id, timeout_s=60)
        except subprocess.TimeoutExpired:
            return "UNKNOWN: `ray job status` did not answer within 60 s"
        text = out.stdout + out.stderr
        for phrase, status in (("' succeeded", "SUCCEEDED"), ("' was stopped", "STOPPED"), ("' failed", "FAILED")):
            if phrase in text:
                return status
        match = re.search(r"Status for job '[^']+': (\w+)", text)
        return match.group(1) if match else f"UNKNOWN: {text[-500:]}"

    def logs(self, job_id: str) -> str:
        return self.cli(ray_bin("ray"), "job", "logs", "--address", DASHBOARD, job_id, timeout_s=60).stdout


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    work = Path(tempfile.mkdtemp(prefix="wsb-", dir="/tmp"))  # short: Ray's socket paths live under it
    profile = yaml.safe_load((PROFILES_DIR / "local.yaml").read_text())
    profile["http"]["port"] = SERVE_PORT
    profile["models"][0]["num_replicas"] = 1
    # float32: the engines' answers must not depend on which requests share a batch (bfloat16's rounding
    # does, on CPUs with bf16; local.yaml's `auto` picks it there). Offline and online use this same file.
    profile["models"][0]["engine"]["dtype"] = "float32"
    config_path = work / "batch-e2e.yaml"
    config_path.write_text(yaml.safe_dump(profile))
    config = parse_config(profile)
    ray = PrivateHead(HeadPorts(GCS_PORT, DASHBOARD_PORT, CLIENT_SERVER_PORT, AGENT_PORT), work / "ray",
                      head_environment(serve_environment(config.ray, config.http), REPO_ROOT))
    try:
        ray.start()
        session = Head(ray, config_path, work)
        # Deploy the online app now, so its engine loads while the first batch job's does.
        serve_config = {"http_options": {"host": "127.0.0.1", "port": SERVE_PORT},
                        "applications": [{"name": "warmserve", "route_prefix": "/",
                                          "import_path": "cluster.serve_app:app_builder",
                                          "args": {"config": str(config_path)}}]}
        (work / "serve.yaml").write_text(yaml.safe_dump(serve_config))
        deployed = session.cli(ray_bin("serve"), "deploy", str(work / "serve.yaml"), "--address", DASHBOARD)
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        yield session
    finally:
        ray.stop()
        shutil.rmtree(work, ignore_errors=True)


@dataclass(slots=True)
class Inputs:
    jsonl: Path
    parquet: Path
    custom_ids: list[str]


@pytest.fixture(scope="module")
def inputs(head: Head) -> Inputs:
    lines = batch_lines(REQUESTS, MAX_TOKENS, seed=3)
    bad = next(line for line in lines if line["custom_id"] == BAD_MAX_TOKENS_ID)
    bad["body"]["max_tokens"] = -1  # well-formed line, invalid field: a 400 response, as online
    jsonl = write_jsonl(head.work / "requests.jsonl", lines, MALFORMED)
    parquet = write_parquet(head.work / "requests.parquet", lines)
    return Inputs(jsonl, parquet, [line["custom_id"] for line in lines])


def _committed(shards_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for shard in sorted(shards_dir.glob("shard-*.jsonl"))
            for line in shard.read_text().splitlines()]


def _wait_for(predicate: Any, timeout_s: float, what: str, diagnosis: Any = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            detail = f"; {diagnosis()}" if diagnosis is not None else ""
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}{detail}")
        time.sleep(0.5)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass(slots=True)
class OfflineRun:
    output: Path
    errors: Path
    committed_before_resume: int
    stopped_status: str
    killed_pid: int
    resume_logs: str
    resume_job: str
    notes: dict[str, Any] = field(default_factory=dict)


@pytest.fixture(scope="module")
def offline_run(head: Head, inputs: Inputs) -> OfflineRun:
    """Job A: its engine worker SIGKILLed after the engine's first shard; once Ray Data has started a
    replacement (whose engine needs a minute), `ray job stop`. Job B, the same input and output, finishes
    the rest.

    Job A runs small shards one at a time (`JOB_A_SHARDS`), so its engine needs tens of seconds for the
    whole input: the kill lands mid-run however fast the machine, where 16-request shards two at a time
    once finished before the poll saw the first commit. Job B uses the default shape; shards are
    committed by custom_id, so a resume need not share the shard size."""
    output = head.work / "offline" / "results.jsonl"
    shards_dir = output.with_name(output.name + ".shards")
    common = ("--input", str(inputs.jsonl), "--output", str(output), "--progress-interval-s", "10")

    def engine_rows() -> int:  # the 400 line is committed before any engine starts
        return sum(r["response"]["status_code"] == 200 for r in _committed(shards_dir))

    def workers() -> list[int]:
        found = []
        for proc in head.processes():
            try:
                if "MapWorker(MapBatches(EngineWorker))" in " ".join(proc.cmdline()):
                    found.append(proc.pid)
            except psutil.Error:  # gone, or a zombie (the killed worker until Ray reaps it)
                continue
        return found

    def diagnosis() -> str:  # what a timeout below shows: the job's state and log, Ray's workers
        titles = []
        for proc in head.processes():
            try:
                titles.append(" ".join(proc.cmdline())[:120])
            except psutil.Error:
                continue
        ray_titles = [t for t in titles if t.startswith("ray::")]
        return f"job A {head.status(job_a)}; ray workers {ray_titles}; log tail:\n{head.logs(job_a)[-3000:]}"

    job_a, submitted = head.submit(*common, *JOB_A_SHARDS, wait=False)
    assert submitted.returncode == 0, submitted.stderr[-2000:]
    _wait_for(lambda: engine_rows() > 0 or head.status(job_a) in TERMINAL, TIMEOUT_S,
              "job A to commit an engine shard", diagnosis)
    found = workers()
    assert len(found) == 1 and engine_rows() < REQUESTS - 1, diagnosis()
    killed = found[0]
    os.kill(killed, signal.SIGKILL)
    # A job that ended here instead (FAILED: Ray Data gave up on the actor) is a defect, not a slow machine.
    _wait_for(lambda: any(pid != killed for pid in workers()) or head.status(job_a) in TERMINAL, 180,
              "Ray Data to restart the engine worker", diagnosis)
    assert head.status(job_a) not in TERMINAL, diagnosis()
    stop = head.cli(ray_bin("ray"), "job", "stop", "--address", DASHBOARD, job_a)
    assert stop.returncode == 0, stop.stderr[-2000:]
    _wait_for(lambda: head.status(job_a) in TERMINAL, 120, "job A to reach a final status", diagnosis)
    stopped = head.status(job_a)
    committed = _committed(shards_dir)
    assert not output.exists(), "a stopped job must not have written the merged output"

    job_b, resumed = head.submit(*common, "--shard-size", str(SHARD_SIZE))
    assert resumed.returncode == 0, resumed.stdout[-4000:] + resumed.stderr[-2000:]
    return OfflineRun(output, output.with_name("results.errors.jsonl"), len(committed), stopped, killed,
                      head.logs(job_b), job_b, {"job_a_logs_tail": head.logs(job_a)[-2000:]})


def test_killed_and_stopped_job_resumes_to_every_custom_id_exactly_once(offline_run: OfflineRun,
                                                                        inputs: Inputs) -> None:
    assert offline_run.stopped_status == "STOPPED", offline_run.notes
    assert 0 < offline_run.committed_before_resume < REQUESTS, offline_run.committed_before_resume
    assert not psutil.pid_exists(offline_run.killed_pid)
    assert f"{offline_run.committed_before_resume} already committed" in offline_run.resume_logs
    lines = _read_jsonl(offline_run.output)
    assert [line["custom_id"] for line in lines] == inputs.custom_ids  # each once, in input order
    committed = _committed(offline_run.output.with_name("results.jsonl.shards"))
    assert sorted(r["custom_id"] for r in committed) == sorted(inputs.custom_ids)  # no shard holds a repeat
    ok = [line for line in lines if line["response"]["status_code"] == 200]
    assert len(ok) == REQUESTS - 1
    assert all(0 < line["response"]["body"]["usage"]["completion_tokens"] <= MAX_TOKENS for line in ok)
    bad = next(line for line in lines if line["custom_id"] == BAD_MAX_TOKENS_ID)
    assert bad["response"]["status_code"] == 400 and bad["response"]["body"]["error"]["param"] == "max_tokens"


def test_malformed_lines_land_in_the_errors_file_by_line_number(offline_run: OfflineRun) -> None:
    errors = _read_jsonl(offline_run.errors)
    assert [e["line"] for e in errors] == list(range(REQUESTS + 1, REQUESTS + 1 + len(MALFORMED)))
    assert [e["error"]["code"] for e in errors] == MALFORMED_CODES


def test_job_logs_show_shard_progress_and_a_final_summary(offline_run: OfflineRun) -> None:
    logs = offline_run.resume_logs
    assert "committed:" in logs and "tokens/s" in logs and "ETA" in logs
    summary = json.loads(logs.split("[batch] summary ", 1)[1].splitlines()[0])
    assert summary["requests"] == REQUESTS and summary["malformed_lines"] == len(MALFORMED)
    assert summary["skipped_already_committed"] == offline_run.committed_before_resume
    assert summary["completed_this_run"] == REQUESTS - offline_run.committed_before_resume
    assert summary["failed_requests"] == 1 and summary["completion_tokens_total"] > REQUESTS
    assert summary["duplicates_dropped"] == 0


def test_resubmitting_a_finished_job_changes_nothing(head: Head, offline_run: OfflineRun, inputs: Inputs) -> None:
    before = offline_run.output.read_bytes()
    _, again = head.submit("--input", str(inputs.jsonl), "--output", str(offline_run.output))
    assert again.returncode == 0, again.stdout[-3000:]
    assert f"{REQUESTS} already committed" in again.stdout and "0 to run" in again.stdout
    assert offline_run.output.read_bytes() == before


def _answer(line: dict[str, Any]) -> tuple[Any, ...]:
    response = line["response"]
    body = response["body"]
    if response["status_code"] != 200:
        return response["status_code"], body["error"]["param"]
    choice = body["choices"][0]
    text = choice["message"]["content"] if "message" in choice else choice["text"]
    return 200, text, choice["finish_reason"], body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"]


def test_offline_greedy_answers_match_the_online_endpoint(head: Head, inputs: Inputs, offline_run: OfflineRun) -> None:
    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{SERVE_PORT}/ready", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    _wait_for(ready, TIMEOUT_S, "the Serve app to be ready")
    output = head.work / "online" / "results.jsonl"
    # Online mode, from the Parquet copy of the same requests, through the app's HTTP endpoint.
    _, done = head.submit("--mode", "online", "--endpoint", f"http://127.0.0.1:{SERVE_PORT}",
                          "--input", str(inputs.parquet), "--output", str(output), "--concurrency", "16",
                          "--shard-size", "50")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    online = {line["custom_id"]: _answer(line) for line in _read_jsonl(output)}
    offline = {line["custom_id"]: _answer(line) for line in _read_jsonl(offline_run.output)}
    assert list(online) == inputs.custom_ids
    mismatched = {cid: (offline[cid], online[cid]) for cid in inputs.custom_ids if offline[cid] != online[cid]}
    assert not mismatched, f"{len(mismatched)} of {REQUESTS} differ, e.g. {list(mismatched.items())[:3]}"
