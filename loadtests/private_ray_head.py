"""A Ray head of one's own on a shared machine: started in its own session, stopped by that session alone.

`ray stop` stops every Ray process on the machine, other people's clusters included; this starts `ray start
--head` on ports the caller names, with its own temp dir (so `address="auto"` elsewhere never finds it),
in a new session, and stops it by signalling exactly the processes of that session: the head's daemons,
its workers and the engine processes they spawned (Ray moves workers to process groups of their own,
but they stay in the session). Used by the batch job's e2e test and benchmark.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil


def ray_bin(name: str) -> str:
    """A console script of the running environment (`ray`, `serve`), beside its python."""
    return str(Path(sys.executable).with_name(name))


@dataclass(slots=True, frozen=True)
class HeadPorts:
    gcs: int
    dashboard: int
    client_server: int
    dashboard_agent: int

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"


@dataclass(slots=True)
class PrivateHead:
    ports: HeadPorts
    temp_dir: Path
    env: dict[str, str]
    session_id: int = 0

    def start(self, num_cpus: int = 8, timeout_s: float = 180.0) -> None:
        """Start the head; raise RuntimeError with `ray start`'s output if it fails."""
        from cluster.ray_control import ensure_auth_token

        ensure_auth_token()
        command = [ray_bin("ray"), "start", "--head", f"--port={self.ports.gcs}",
                   f"--dashboard-port={self.ports.dashboard}", "--dashboard-host=127.0.0.1",
                   f"--ray-client-server-port={self.ports.client_server}",
                   f"--dashboard-agent-listen-port={self.ports.dashboard_agent}", f"--num-cpus={num_cpus}",
                   f"--temp-dir={self.temp_dir}", "--disable-usage-stats"]
        process = subprocess.Popen(command, env=self.env, start_new_session=True, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        self.session_id = process.pid  # a new session's id is its leader's pid, kept after the leader exits
        out, _ = process.communicate(timeout=timeout_s)
        if process.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start failed ({process.returncode}):\n{out[-3000:]}")

    def processes(self) -> list[psutil.Process]:
        found = []
        for proc in psutil.process_iter():
            try:
                if self.session_id and os.getsid(proc.pid) == self.session_id:
                    found.append(proc)
            except (ProcessLookupError, PermissionError, psutil.Error):
                continue
        return found

    def stop(self, remove_temp_dir: bool = True) -> None:
        """SIGTERM, then SIGKILL what is left, every process of this head's session."""
        for sig, grace_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            for proc in self.processes():
                try:
                    proc.send_signal(sig)
                except psutil.Error:
                    pass
            deadline = time.monotonic() + grace_s
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.5)
        if remove_temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def cli(self, *args: str, timeout_s: float = 600.0) -> subprocess.CompletedProcess[str]:
        """Run a command with the head's environment (token auth, PATH to this environment)."""
        return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout_s, env=self.env)


def head_environment(extra: dict[str, str], pythonpath: Path) -> dict[str, str]:
    """This process's environment for the head and its jobs: token auth, `python` = this environment's,
    the repository importable (Serve's controller imports the app builder), no inherited RAY_ADDRESS."""
    env = {**os.environ, "RAY_AUTH_MODE": "token", "PYTHONPATH": str(pythonpath),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **extra}
    env.pop("RAY_ADDRESS", None)
    return env
