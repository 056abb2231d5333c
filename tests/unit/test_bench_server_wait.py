"""The benchmark harness stops waiting for a server the moment its process dies, instead of polling a dead
port for ten minutes (what happened when raw vLLM could not load its model)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from loadtests.compare_raw_vllm import _wait_for


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
