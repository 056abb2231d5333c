"""Systems a comparison run starts, measures and stops, one at a time, on the local host.

- `kv_aware`, `pow2`, `round_robin`, `ray_prefix_affinity`: warmserve with the `local` profile (2 SmolLM2
  replicas) and only `router.policy` changed, started with `./warmserve up --config <variant>` and stopped
  with `./warmserve down` (as loadtests/compare_routers.py does);
- `raw_vllm`: raw vLLM's OpenAI server, one engine with the bench-1replica engine flags, started and stopped
  the way loadtests/compare_raw_vllm.py does it;
- `ray_serve_llm`: the peer, Ray Serve LLM (`loadtests/ray_serve_llm_peer.py`) on a plain Ray head, with two
  LLMServer replicas (like the `local` profile) routed by its own `PrefixCacheAffinityRouter`, the same
  engine flags as raw vLLM.

Talking to each target is HTTP only; starting one is a subprocess. Called by `loadtests.compare_targets`.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from loadtests.locust_runner import REPO_ROOT, stop_process

WARMSERVE_POLICIES = ("kv_aware", "pow2", "round_robin", "ray_prefix_affinity")
TARGETS = (*WARMSERVE_POLICIES, "raw_vllm", "ray_serve_llm")
PEER_REPLICAS = 2  # as many engines as the `local` profile's, so routing is compared on equal hardware
WARMSERVE_ROOT = "http://127.0.0.1:8000"
LOCAL_PROFILE = REPO_ROOT / "configs" / "profiles" / "local.yaml"
START_TIMEOUT_S = 600.0


@dataclass(slots=True)
class Target:
    """`start()` returns the root URL once the target answers; `stop()` must work after a failed start."""

    name: str
    start: Callable[[], str]
    stop: Callable[[], None]
    description: str


def parse_targets(text: str) -> list[str]:
    """Comma-separated names from TARGETS, at least one, no repeats. Raises ValueError naming a bad one."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"--compare needs at least one target (from: {', '.join(TARGETS)})")
    for name in names:
        if name not in TARGETS:
            raise ValueError(f"unknown target {name!r} (targets: {', '.join(TARGETS)})")
    if len(set(names)) != len(names):
        raise ValueError(f"--compare names a target twice: {text}")
    return names


def answers(root: str) -> bool:
    try:
        with urllib.request.urlopen(f"{root}/v1/models", timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


VISION_TASK = "image-classification"  # the `task` warmserve's /v1/models gives its vision models


def served_models(root: str) -> list[str]:
    """The LLM ids /v1/models lists. Raises OSError (with the reason) when the server does not answer."""
    return [str(m.get("id")) for m in _model_cards(root) if m.get("task") != VISION_TASK]


def served_vision_models(root: str) -> list[str]:
    """The vision model ids /v1/models lists (warmserve's cards say `task: image-classification`)."""
    return [str(m.get("id")) for m in _model_cards(root) if m.get("task") == VISION_TASK]


def _model_cards(root: str) -> list[dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{root}/v1/models", timeout=10) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise OSError(f"{root}/v1/models answered HTTP {error.code}") from None
    except (urllib.error.URLError, TimeoutError, ValueError) as error:
        raise OSError(f"cannot reach {root}/v1/models: {getattr(error, 'reason', error)}") from None
    return [m for m in body.get("data", []) if isinstance(m, dict)]


def warm_up(root: str, model: str) -> None:
    """One short request, so no measured request pays a cold path (first compile, first connection)."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "Say hello."}],
                       "max_tokens": 4, "temperature": 0}).encode()
    request = urllib.request.Request(f"{root}/v1/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        response.read()


def write_policy_config(policy: str, path: Path) -> Path:
    """The `local` profile with every model's `router.policy` set to `policy`, written to `path`."""
    config = yaml.safe_load(LOCAL_PROFILE.read_text())
    for model in config["models"]:
        model.setdefault("router", {})["policy"] = policy
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _warmserve_target(policy: str, work_dir: Path) -> Target:
    warmserve = str(REPO_ROOT / "warmserve")

    started: list[bool] = []

    def start() -> str:
        if answers(WARMSERVE_ROOT):
            # Never measure, or later stop, a cluster this run did not start.
            raise RuntimeError(f"something already serves {WARMSERVE_ROOT}; stop it (./warmserve down) first")
        path = write_policy_config(policy, work_dir / f"warmserve-{policy}.yaml")
        started.append(True)
        subprocess.run([warmserve, "up", "--config", str(path)], check=True, cwd=REPO_ROOT)
        return WARMSERVE_ROOT

    def stop() -> None:
        if started:
            subprocess.run([warmserve, "down"], check=False, cwd=REPO_ROOT)
            started.clear()

    return Target(policy, start, stop, f"warmserve, local profile (2 replicas), router.policy {policy}")


def _raw_vllm_target() -> Target:
    # Imported here: it is the raw-vLLM harness's own way to start the server (same flags as its benchmark).
    from loadtests import compare_raw_vllm as raw

    process: list[subprocess.Popen[bytes]] = []

    def start() -> str:
        if answers(f"http://127.0.0.1:{raw.RAW_PORT}"):
            raise RuntimeError(f"something already serves port {raw.RAW_PORT}; stop it first")
        (REPO_ROOT / "reports").mkdir(exist_ok=True)
        process.append(raw._start_raw_vllm(raw.EngineSettings()))
        root = f"http://127.0.0.1:{raw.RAW_PORT}"
        raw._wait_for(f"{root}/v1/models", START_TIMEOUT_S)
        return root

    def stop() -> None:
        for running in process:
            stop_process(running, grace_s=0, terminate_wait_s=60)
        process.clear()

    return Target("raw_vllm", start, stop, "raw `vllm serve` (OpenAI server), 1 engine, bench-1replica flags")


def _ray_serve_llm_target() -> Target:
    from loadtests import compare_raw_vllm as raw

    started: list[bool] = []

    def start() -> str:
        if answers(WARMSERVE_ROOT):  # the peer serves on warmserve's port: never measure someone else's
            raise RuntimeError(f"something already serves {WARMSERVE_ROOT}; stop it (./warmserve down) first")
        started.append(True)
        raw.start_ray_serve_llm(replicas=PEER_REPLICAS, prefix_router=True)
        return WARMSERVE_ROOT

    def stop() -> None:
        if started:
            raw.stop_ray_serve_llm()
            started.clear()

    return Target("ray_serve_llm", start, stop,
                  f"Ray Serve LLM, {PEER_REPLICAS} LLMServer replicas, its PrefixCacheAffinityRouter, "
                  "bench-1replica engine flags")


def build_targets(names: list[str], work_dir: Path) -> list[Target]:
    builders: dict[str, Callable[[], Target]] = {"raw_vllm": _raw_vllm_target,
                                                 "ray_serve_llm": _ray_serve_llm_target}
    return [builders[name]() if name in builders else _warmserve_target(name, work_dir) for name in names]
