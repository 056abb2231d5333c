"""`warmserve loadtest ...`: runs the Locust load-test harness (loadtests/run_loadtest.py) in a subprocess.

A subprocess, not an import: loadtests talk to the cluster over HTTP only and sit outside the package layering.
Every argument goes through unchanged (`warmserve loadtest --help` shows the harness's options); the exit code
comes back unchanged (0 all requests succeeded, 1 some failed, 2 bad input or unreachable target).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_loadtest(passthrough: list[str]) -> int:
    """Who calls: `cluster.cli` for `warmserve loadtest ...`. Returns the harness's exit code."""
    command = [sys.executable, "-m", "loadtests.run_loadtest", *passthrough]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    try:
        return subprocess.run(command, cwd=REPO_ROOT, env=env).returncode
    except KeyboardInterrupt:  # the harness got the same Ctrl-C and stops Locust itself
        return 130


def cmd_loadtest(args: argparse.Namespace) -> int:
    """The `loadtest` subcommand's handler in cluster.cli: everything after `loadtest` is the harness's."""
    return run_loadtest(list(args.passthrough))
