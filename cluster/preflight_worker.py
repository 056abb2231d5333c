"""The actor the preflight puts in each engine-worker bundle: real torch.distributed between the bundles.

`cluster.preflight` creates one `PreflightWorker` per engine worker of a replica's placement group (with
the resources that worker will ask for), asks rank 0 to open the rendezvous, then calls `run` on every
rank at once. Every rank walks the same schedule, so collectives line up: rendezvous, process group
(the gloo full mesh or NCCL communicator), a checked world all-reduce, an all-reduce per TP group and
send/recv ping-pong plus a bulk transfer over each pipeline link. Every step is bounded by
`spec.op_timeout_s`; `progress` (served from a second actor thread) tells the driver which step a rank is
in, so a hang is still reported with the ranks it was waiting for.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

# Settings that decide which interface and transport NCCL and gloo use; reported per node because a
# mismatch between nodes is the most common cause of a multi-node hang.
NETWORK_ENV = ("NCCL_SOCKET_IFNAME", "GLOO_SOCKET_IFNAME", "NCCL_IB_DISABLE", "NCCL_IB_HCA", "NCCL_P2P_DISABLE",
               "NCCL_NET", "NCCL_DEBUG", "NCCL_SOCKET_FAMILY", "CUDA_VISIBLE_DEVICES")


@dataclass(slots=True)
class WorkerIdentity:
    node_id: str
    node_ip: str
    hostname: str
    pid: int
    env: dict[str, str]


@dataclass(slots=True)
class CheckSpec:
    """What one rank runs; built by the driver, identical on every rank except `rank`."""

    backend: str
    master_addr: str
    master_port: int
    rank: int
    world_size: int
    tensor_parallel_size: int
    pipeline_links: list[tuple[int, int]]
    op_timeout_s: float
    latency_iters: int
    bandwidth_bytes: int
    bandwidth_iters: int


@dataclass(slots=True)
class Measurement:
    """`all_reduce` over `ranks`, or `send_recv` from ranks[0] to ranks[1]; bandwidth in GB/s (10^9 B/s),
    bus bandwidth for all-reduce (as nccl-tests report it), 0 for a group of one."""

    kind: str
    ranks: list[int]
    latency_us: float
    bandwidth_gbps: float
    size_bytes: int


@dataclass(slots=True)
class RankOutcome:
    rank: int
    ok: bool
    phase: str
    peers: list[int]
    error: str | None
    elapsed_s: float
    measurements: list[Measurement] = field(default_factory=list)


class PreflightWorker:
    """Wrapped by `ray.remote` in `cluster.preflight` (max_concurrency=2: `progress` answers during `run`)."""

    def __init__(self) -> None:
        self._store: Any = None
        self._lock = threading.Lock()
        self._phase, self._peers, self._started = "created", [], time.monotonic()

    def identity(self) -> WorkerIdentity:
        import ray
        # Imported now, while the driver waits for every actor to start, so the bounded checks that follow
        # measure the network and not torch's import (seconds on a busy node); a missing torch fails here.
        import torch.distributed  # noqa: F401

        context = ray.get_runtime_context()
        return WorkerIdentity(node_id=context.get_node_id(), node_ip=ray.util.get_node_ip_address(),
                              hostname=socket.gethostname(), pid=os.getpid(),
                              env={key: os.environ[key] for key in NETWORK_ENV if key in os.environ})

    def open_rendezvous(self, world_size: int, timeout_s: float) -> int:
        """Rank 0 only: host the TCPStore every rank meets at, on a free port, and return the port."""
        from torch.distributed import TCPStore

        # Port 0: the OS picks a free port, so concurrent preflights and other jobs never collide.
        self._store = TCPStore("127.0.0.1", 0, world_size, is_master=True,
                               timeout=timedelta(seconds=timeout_s), wait_for_workers=False)
        return int(self._store.port)

    def progress(self) -> tuple[str, list[int], float]:
        with self._lock:
            return self._phase, list(self._peers), time.monotonic() - self._started

    def _enter(self, phase: str, peers: list[int]) -> None:
        with self._lock:
            self._phase, self._peers = phase, peers

    def run(self, spec: CheckSpec) -> RankOutcome:
        """The whole schedule for one rank; never raises: a failure comes back with its phase and peers."""
        self._started = time.monotonic()
        measurements: list[Measurement] = []
        try:
            import torch.distributed as dist

            self._connect(spec)
            _Checks(spec, measurements, self._enter).run_all()
            self._enter("done", [])
            dist.destroy_process_group()
            return RankOutcome(spec.rank, True, "done", [], None, time.monotonic() - self._started, measurements)
        except Exception as error:  # reported to the driver, which names the nodes and the likely cause
            phase, peers, elapsed = self.progress()
            # torch appends its C++ stack to the message; the first lines say what failed.
            message = f"{type(error).__name__}: {error}".split("\nException raised from")[0].strip()
            return RankOutcome(spec.rank, False, phase, peers, message[:2000], elapsed, measurements)

    def _connect(self, spec: CheckSpec) -> None:
        import torch.distributed as dist
        from torch.distributed import TCPStore

        timeout = timedelta(seconds=spec.op_timeout_s)
        self._enter("rendezvous", [0])
        if spec.rank == 0:
            store = self._store
        else:
            _reach(spec.master_addr, spec.master_port, spec.op_timeout_s)
            store = TCPStore(spec.master_addr, spec.master_port, spec.world_size, is_master=False, timeout=timeout)
        self._enter(f"init {spec.backend}", [r for r in range(spec.world_size) if r != spec.rank])
        kwargs: dict[str, Any] = {}
        if spec.backend == "nccl":
            import torch

            # Ray gives each worker its own GPU as device 0; naming it makes NCCL build its communicator
            # now (eager init), so a broken transport fails here, inside the bound, not at the first op.
            kwargs["device_id"] = torch.device("cuda", 0)
        dist.init_process_group(spec.backend, store=store, rank=spec.rank, world_size=spec.world_size,
                                timeout=timeout, **kwargs)


class _Checks:
    """The collective schedule; every rank calls the same methods in the same order."""

    def __init__(self, spec: CheckSpec, out: list[Measurement], enter: Callable[[str, list[int]], None]) -> None:
        import torch

        self.spec, self.out, self.enter = spec, out, enter
        self.device = torch.device("cuda", 0) if spec.backend == "nccl" else torch.device("cpu")

    def run_all(self) -> None:
        import torch.distributed as dist

        spec = self.spec
        world = list(range(spec.world_size))
        self._checked_world_all_reduce()
        tp = spec.tensor_parallel_size
        # new_group must be called by every rank for every group, in the same order; TP=1 has no TP traffic.
        groups = [(ranks, dist.new_group(ranks, timeout=timedelta(seconds=spec.op_timeout_s)))
                  for ranks in (world[s:s + tp] for s in range(0, spec.world_size, tp))] if tp > 1 else []
        for ranks, group in groups:
            if spec.rank in ranks:
                self.enter(f"all_reduce TP group {ranks[0]}-{ranks[-1]}", [r for r in ranks if r != spec.rank])
                self._time_all_reduce(ranks, group)
        for sender, receiver in spec.pipeline_links:
            if spec.rank in (sender, receiver):
                self.enter(f"send_recv {sender}->{receiver}", [receiver if spec.rank == sender else sender])
                self._time_link(sender, receiver)
        self.enter("final barrier", [r for r in world if r != spec.rank])
        dist.barrier()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch

            torch.cuda.synchronize()

    def _checked_world_all_reduce(self) -> None:
        import torch
        import torch.distributed as dist

        spec = self.spec
        self.enter("all_reduce world (checked)", [r for r in range(spec.world_size) if r != spec.rank])
        tensor = torch.full((1024,), float(spec.rank + 1), device=self.device)
        dist.all_reduce(tensor)
        self._sync()
        expected = spec.world_size * (spec.world_size + 1) / 2
        if not torch.all(tensor == expected):
            raise ValueError(f"all-reduce returned {tensor[0].item()}, expected {expected}: data corrupted")

    def _time_all_reduce(self, ranks: list[int], group: Any) -> None:
        import torch
        import torch.distributed as dist

        spec = self.spec
        small = torch.ones(1, device=self.device)
        latency = []
        for _ in range(spec.latency_iters):
            start = time.perf_counter()
            dist.all_reduce(small, group=group)
            self._sync()
            latency.append(time.perf_counter() - start)
        big = torch.ones(spec.bandwidth_bytes // 4, device=self.device)
        best = float("inf")
        for _ in range(spec.bandwidth_iters):
            start = time.perf_counter()
            dist.all_reduce(big, group=group)
            self._sync()
            best = min(best, time.perf_counter() - start)
        n = len(ranks)
        bus = spec.bandwidth_bytes / best * 2 * (n - 1) / n / 1e9 if n > 1 else 0.0
        self.out.append(Measurement("all_reduce", list(ranks), _median(latency) * 1e6, bus, spec.bandwidth_bytes))

    def _time_link(self, sender: int, receiver: int) -> None:
        import torch
        import torch.distributed as dist

        spec = self.spec
        me_sends = spec.rank == sender
        peer = receiver if me_sends else sender
        ping = torch.zeros(1, device=self.device)

        def exchange(payload: object) -> float:
            """Seconds for `payload` to reach the receiver and its one-element ack to come back (the ack
            marks the end of the transfer on the sender's clock)."""
            start = time.perf_counter()
            if me_sends:
                dist.send(payload, peer)
                dist.recv(ping, peer)
            else:
                dist.recv(payload, peer)
                dist.send(ping, peer)
            self._sync()
            return time.perf_counter() - start

        round_trips = [exchange(ping) for _ in range(spec.latency_iters)]
        bulk = torch.zeros(spec.bandwidth_bytes // 4, device=self.device)
        best = min(exchange(bulk) for _ in range(spec.bandwidth_iters))
        if me_sends:
            self.out.append(Measurement("send_recv", [sender, receiver], _median(round_trips) / 2 * 1e6,
                                        spec.bandwidth_bytes / best / 1e9, spec.bandwidth_bytes))


def _reach(address: str, port: int, timeout_s: float) -> None:
    """Connect to the rendezvous once within `timeout_s`, or raise naming the address and the last error.

    TCPStore's own client retries with a random back-off and took up to 3x its timeout to give up on an
    unreachable address (measured); this keeps the failure inside the bound and says how it failed.
    """
    deadline = time.monotonic() + timeout_s
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, port), timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
                return
        except OSError as error:  # refused, unreachable or timed out: retry until the bound
            last = error
            time.sleep(0.2)
    raise ConnectionError(f"cannot reach the rendezvous {address}:{port} within {timeout_s:.0f} s: "
                          f"{last if last is not None else 'timed out'}")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0
