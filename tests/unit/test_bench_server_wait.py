"""The benchmark harness stops waiting for a server the moment its process dies, instead of polling a dead
port for ten minutes (what happened when raw vLLM could not load its model)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from loadtests.compare_raw_vllm import _wait_for, apply_override


def test_a_server_that_exits_fails_the_wait_at_once() -> None:
    server = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    server.wait(timeout=30)
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="exited with status 3"):
        _wait_for("http://127.0.0.1:9/v1/models", timeout_s=600, process=server)
    assert time.monotonic() - started < 5


def test_without_a_process_the_wait_times_out() -> None:
    with pytest.raises(TimeoutError, match="not up after"):
        _wait_for("http://127.0.0.1:9/v1/models", timeout_s=0.5)


def test_warmserve_overrides_set_nested_fields_and_lists() -> None:
    config = {"ray": {"background_niceness": 15}, "models": [{"engine": {"stream_interval": 1}}]}
    apply_override(config, "ray.background_niceness=null")
    apply_override(config, "models.0.engine.stream_interval=4")
    apply_override(config, "http.port=8001")
    assert config == {"ray": {"background_niceness": None}, "models": [{"engine": {"stream_interval": 4}}],
                      "http": {"port": 8001}}
    for bad in ("ray.background_niceness", "=3", "ray..x=1"):
        with pytest.raises(ValueError, match="expected KEY.PATH=VALUE"):
            apply_override(config, bad)
