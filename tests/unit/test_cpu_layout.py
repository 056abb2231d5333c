"""Cores for the engine, cores for the serving path: core lists, the config checks that keep them apart,
and what `warmserve up` checks against the machine (configs/cpu_sets.py, cluster/cpu_affinity.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.cpu_affinity import machine_cpus, serving_affinity, serving_cpus_problem
from configs.cpu_sets import engine_bind_cpus, parse_cpu_list
from configs.loader import ConfigError, parse_config


def _split(serving: str = "1", bind: str = "0", **model: object) -> dict:
    return {"ray": {"serving_cpus": serving},
            "models": [{"name": "m", "model": "tiny-random-llama", "engine": {"cpu_threads_bind": bind}, **model}]}


def _issues(data: dict) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    return [str(issue) for issue in caught.value.issues]


def test_core_lists_parse_in_kernel_notation_and_bad_parts_are_named() -> None:
    assert parse_cpu_list("0,2-3") == {0, 2, 3}
    assert parse_cpu_list("5") == {5}
    for bad, part in (("a", "'a'"), ("1-", "'1-'"), ("0,,1", "''")):
        with pytest.raises(ValueError, match=part):
            parse_cpu_list(bad)
    with pytest.raises(ValueError, match="runs backwards"):
        parse_cpu_list("3-1")
    assert engine_bind_cpus("nobind") is None and engine_bind_cpus("auto") is None
    assert engine_bind_cpus("0|1-2") == [{0}, {1, 2}]


def test_a_split_layout_validates() -> None:
    config = parse_config(_split())
    assert config.ray.serving_cpus == "1" and config.models[0].engine.cpu_threads_bind == "0"


def test_every_way_to_overlap_or_float_is_refused_with_the_reason() -> None:
    assert "must name the engine's own cores" in _issues(_split(bind="nobind"))[0]
    assert "uses serving core(s) 1" in _issues(_split(bind="1"))[0]
    assert "runs one replica" in _issues(_split(num_replicas=2))[0]
    two_models = _split()
    two_models["models"].append({"name": "n", "model": "tiny-random-llama", "engine": {"cpu_threads_bind": "0"}})
    assert "which model 'm''s engine is bound to" in _issues(two_models)[0]
    assert "'x' is not a core number" in _issues(_split(serving="x"))[0]
    assert "expected 'auto', 'nobind' or core lists" in _issues(_split(bind="0|"))[0]
    joined = _split()
    joined["ray"]["address"] = "10.0.0.1:6379"
    assert "applies to the head `warmserve up` starts" in _issues(joined)[0]


def test_one_core_list_per_tensor_parallel_worker() -> None:
    data = {"models": [{"name": "m", "model": "tiny-random-llama",
                        "engine": {"tensor_parallel_size": 2, "cpu_threads_bind": "0"}}]}
    assert "1 core list(s) but tensor_parallel_size=2" in _issues(data)[0]


def test_the_machine_is_read_from_the_cgroup_then_the_online_list(tmp_path: Path) -> None:
    cgroup, online = tmp_path / "cpuset.cpus.effective", tmp_path / "online"
    online.write_text("0-3\n")
    assert machine_cpus((cgroup, online)) == {0, 1, 2, 3}
    cgroup.write_text("0-1\n")
    assert machine_cpus((cgroup, online)) == {0, 1}


def test_up_names_cores_the_machine_lacks() -> None:
    config = parse_config(_split(serving="1", bind="7"))
    assert serving_cpus_problem(config, available=frozenset({0, 1, 2, 3, 4, 5, 6, 7})) is None
    problem = serving_cpus_problem(config, available=frozenset({0, 1}))
    assert problem == "model 'm': engine.cpu_threads_bind='7': this machine has no core(s) 7 (it has 0,1)"
    config = parse_config(_split(serving="2-3", bind="0"))
    assert "ray.serving_cpus='2-3': this machine has no core(s) 2,3" in serving_cpus_problem(
        config, available=frozenset({0, 1}))


def test_the_head_and_what_it_starts_run_on_the_serving_cores() -> None:
    core = min(os.sched_getaffinity(0))
    child = subprocess.run([sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                           capture_output=True, text=True, check=True, preexec_fn=serving_affinity(str(core)))
    assert child.stdout.strip() == f"[{core}]"
