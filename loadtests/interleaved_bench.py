"""The interleaved form of the serving-path benchmark: raw `vllm serve` and warmserve both up, measured in
alternation, one run each per pair, the other system paused (SIGSTOP) while one is measured.

    ./warmserve bench --interleave 10 [--requests 200 --concurrency 8 --max-tokens 16]

Per pair i both systems answer the same prompts (seed i) in neighbouring stretches of time, and the order
alternates (raw first in even pairs, warmserve first in odd ones) so a steady drift of the host does not
favour one side. After each resume a short warm-up runs before the measured run, so the resumed system's
caches are as warm as they were when it was paused. loadtests/paired_stats.py turns the pairs into the
median ratio and its quartiles.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import psutil

from loadtests.compare_raw_vllm import (RAW_PORT, REPO_ROOT, WARMSERVE_PORT, EngineSettings, _measured_run,
                                        _start_raw_vllm, _wait_for, _warm_up, _warmserve_config)
from loadtests.process_freeze import ProcessGroup

Shape = tuple[str, int, int, int, int]  # workload, runs (unused here), requests, concurrency, max_tokens


def _engine_pids(group: ProcessGroup) -> set[int]:
    pids = set()
    for pid in group.pids:
        try:
            if psutil.Process(pid).name().startswith("VLLM::EngineCo"):  # the kernel keeps 15 characters
                pids.add(pid)
        except psutil.Error:
            pass
    return pids


def _check_ready(base_url: str, engines_before: set[int], engines_now: set[int]) -> None:
    """After a resume: the system answers, with the engine it had (Ray did not take the pause for a dead
    replica and start a cold one, which would make the pair compare a cold engine with a warm one)."""
    _wait_for(f"{base_url}/models", 120)
    if engines_now != engines_before:
        raise RuntimeError(f"{base_url}: its engine processes changed across a pause ({sorted(engines_before)} -> "
                           f"{sorted(engines_now)}); the interleaved figures would not be comparable")


def _resume_quietly(group: Callable[[], ProcessGroup]) -> None:
    """Resume during clean-up, where a system that already exited must not hide the original error."""
    try:
        group().resume()
    except (RuntimeError, psutil.Error) as error:
        print(f"[bench] nothing to resume: {error}", flush=True)


def run_interleaved(pairs: int, shape: Shape, settings: EngineSettings,
                    overrides: list[str]) -> dict[str, list[dict[str, object]]]:
    """Runs per system, `pairs` each, run i of both systems forming pair i."""
    workload, _, requests, concurrency, max_tokens = shape
    urls = {"raw_vllm": f"http://127.0.0.1:{RAW_PORT}/v1", "warmserve": f"http://127.0.0.1:{WARMSERVE_PORT}/v1"}
    warmserve = str(REPO_ROOT / "warmserve")
    print("[bench] interleaved: starting raw vLLM, then warmserve; both stay up", flush=True)
    raw = _start_raw_vllm(settings)
    # Groups are looked up again at every pause: Ray may have started or recycled a worker meanwhile.
    groups: dict[str, Callable[[], ProcessGroup]] = {
        "raw_vllm": lambda: ProcessGroup.tree("raw_vllm", raw.pid),
        "warmserve": lambda: ProcessGroup.ray_session("warmserve", exclude=groups["raw_vllm"]().pids),
    }
    runs: dict[str, list[dict[str, object]]] = {"raw_vllm": [], "warmserve": []}
    warmserve_up = False
    try:
        _wait_for(f"{urls['raw_vllm']}/models", 600, raw)
        _warm_up(urls["raw_vllm"], workload, max(2 * concurrency, requests // 2), concurrency, max_tokens)
        groups["raw_vllm"]().pause()
        warmserve_up = True
        subprocess.run([warmserve, "up", "--config", _warmserve_config(settings, overrides)], check=True)
        _warm_up(urls["warmserve"], workload, max(2 * concurrency, requests // 2), concurrency, max_tokens)
        engines = {system: _engine_pids(make()) for system, make in groups.items()}
        for index in range(pairs):
            order = ("raw_vllm", "warmserve") if index % 2 == 0 else ("warmserve", "raw_vllm")
            for system in order:
                other = "warmserve" if system == "raw_vllm" else "raw_vllm"
                groups[other]().pause()
                resumed = groups[system]()
                resumed.resume()
                _check_ready(urls[system], engines[system], _engine_pids(resumed))
                _warm_up(urls[system], workload, 2 * concurrency, concurrency, max_tokens)
                runs[system].append(_measured_run(system, urls[system], workload, requests, concurrency,
                                                  max_tokens, seed=index, title=f"pair {index + 1}/{pairs}"))
    finally:
        # Resume everything before stopping it: a stopped process cannot act on SIGTERM.
        _resume_quietly(groups["raw_vllm"])
        if warmserve_up:
            _resume_quietly(groups["warmserve"])
            subprocess.run([warmserve, "down"], check=False)
        raw.terminate()
        raw.wait(timeout=60)
    return runs
