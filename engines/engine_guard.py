"""Ends an engine's processes when the replica that started them dies without stopping them.

vLLM runs its engine core (and its workers) as child processes of the replica actor. A replica that
shuts down stops them; a replica that is killed (SIGKILL, `ray stop --force`, a crashed actor that Serve
replaces) leaves them behind, reparented to init, holding their memory (GPU memory on a GPU node), and
an engine core busy in its loop does not act on SIGTERM. This guard runs beside the replica as its own
small process: it keeps a list of the replica's descendants, and once the replica is gone it ends each of
them that still runs (SIGTERM, then SIGKILL after a grace period), then exits.

Run as an isolated script (`python -I engine_guard.py --watch PID`: no script folder on the import path,
where this package's `types` module would shadow the standard library's), so it imports only the
standard library and psutil, never the project.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import psutil

POLL_S = 1.0
# The process tree is walked (every process's parent read from /proc) only every this many polls: an
# engine's processes appear while it starts and then stay, and a liveness check alone costs nothing.
REFRESH_EVERY_POLLS = 5
TERM_GRACE_S = 3.0
Identity = tuple[int, float]  # (pid, create time): a pid alone may be reused by an unrelated process


def _identity(process: psutil.Process) -> Identity | None:
    try:
        return process.pid, process.create_time()
    except psutil.Error:
        return None


def still_running(identity: Identity) -> psutil.Process | None:
    """The process `identity` names, if it is alive and is still that process."""
    try:
        process = psutil.Process(identity[0])
        if process.create_time() != identity[1] or process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except psutil.Error:
        return None


def end_processes(identities: set[Identity], grace_s: float = TERM_GRACE_S) -> list[str]:
    """SIGTERM each process that still runs, SIGKILL those alive after `grace_s`; returns what was ended
    ("name (pid N)")."""
    alive = [p for p in (still_running(i) for i in identities) if p is not None]
    ended = []
    for process in alive:
        try:
            ended.append(f"{process.name()} (pid {process.pid})")
            process.send_signal(signal.SIGTERM)
        except psutil.Error:
            continue
    _, survivors = psutil.wait_procs(alive, timeout=grace_s)
    for process in survivors:
        try:
            process.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(survivors, timeout=grace_s)
    return ended


def descendants(root: psutil.Process, exclude: int) -> set[Identity]:
    try:
        children = root.children(recursive=True)
    except psutil.Error:
        return set()
    return {i for i in (_identity(c) for c in children if c.pid != exclude) if i is not None}


def guard(watched: Identity, poll_s: float = POLL_S) -> list[str]:
    """Follow `watched`'s descendants until it dies, then end those still running; returns what it ended."""
    root = still_running(watched)
    known: set[Identity] = set()
    polls = 0
    while root is not None:
        if polls % REFRESH_EVERY_POLLS == 0:
            known = {i for i in known if still_running(i) is not None} | descendants(root, exclude=os.getpid())
        polls += 1
        time.sleep(poll_s)
        root = still_running(watched)
    return end_processes(known)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watch", type=int, required=True, help="the replica's pid")
    parser.add_argument("--poll-s", type=float, default=POLL_S)
    args = parser.parse_args(argv)
    watched = _identity(psutil.Process(args.watch))
    if watched is None:
        return 0
    # A terminal's or Ray's signals to the replica's group are not for the guard: it ends with the replica.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ended = guard(watched, args.poll_s)
    if ended:
        print(f"engine guard: replica {args.watch} died; ended {', '.join(ended)}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
