"""`warmserve loadtest` input checking: bad input is a clear message and exit code 2, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtests.run_loadtest import main as loadtest_main, normalize_host

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv", [["--users", "0"], ["--shape", "wave"], ["--duration", "-1"],
                                  ["--scenario", "nope"], ["--workers", "-1"], ["--slo-ttft-ms", "0"],
                                  ["--host", "ftp://x"], ["--host", "http://127.0.0.1:9"]])
def test_bad_input_exits_2_with_a_message(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        raise SystemExit(loadtest_main(argv))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_host_normalization() -> None:
    assert normalize_host("http://h:1/v1/") == "http://h:1"
    assert normalize_host("http://h:1/fake/v1") == "http://h:1/fake"
    assert normalize_host("https://h") == "https://h"


def test_the_warmserve_cli_passes_loadtest_arguments_through() -> None:
    result = subprocess.run([sys.executable, "-m", "cluster.cli", "loadtest", "--users", "0"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 2
    assert "users must be an integer" in result.stderr and "Traceback" not in result.stderr
