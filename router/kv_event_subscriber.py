"""One ZMQ SUB socket per LLM replica's KV event publisher, read on a background thread.

Decoding (msgpack only, never pickle) and socket work stay off the request path's event loop; each decoded
batch is handed to `on_batch(replica, batch)`, which the owner makes thread-safe (the Serve adapter hops
it onto its loop). Replicas come and go through `set_endpoints`; a malformed message is counted and
dropped, and the next good one resynchronises through the index's sequence-gap reset.

The thread must outlive anything a publisher sends or the owner's callback does: if it stopped, the
router's index would freeze silently. So every message is handled inside its own `try`, and an
unexpected error in the loop itself (a socket that cannot connect, a ZMQ failure) restarts the loop on
fresh sockets after a pause. Each kind of trouble is counted and told to `on_trouble(kind)`, which the
owner turns into metrics; `alive` says whether the thread runs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from engines.kv_event_codec import KVEventDecodeError, decode_payload, decode_seq
from engines.kv_events_relay import ClusterSecretError, cluster_secret, secure_subscriber
from engines.types import KVEventBatch
from router.prefix_index import ReplicaId

@dataclass(frozen=True, slots=True)
class KVEventSource:
    """Where one replica's events are read: its engine's local socket, or (`secure`) the CURVE relay of a
    replica on another node (engines/kv_events_relay.py)."""

    address: str
    secure: bool = False


OnBatch = Callable[[ReplicaId, KVEventBatch], None]
# "decode" (a malformed message), "apply" (the owner's callback failed), "connect" (an endpoint ZMQ
# refused), "restart" (the loop restarted).
OnTrouble = Callable[[str], None]
TROUBLE_KINDS = ("decode", "apply", "connect", "restart")
POLL_INTERVAL_MS = 100
RESTART_PAUSE_S = 0.5
logger = logging.getLogger("warmserve.router.events")


class KVEventSubscriber:
    def __init__(self, on_batch: OnBatch, context: zmq.Context | None = None,
                 on_trouble: OnTrouble | None = None, secret: Callable[[], bytes] = cluster_secret) -> None:
        self._on_batch = on_batch
        self._on_trouble = on_trouble
        self._secret = secret  # the cluster secret, read when a secure source first needs it
        self._context = context or zmq.Context.instance()
        self._wanted: dict[ReplicaId, KVEventSource] = {}
        self._refused: dict[ReplicaId, KVEventSource] = {}  # sources it could not follow, until they change
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber", daemon=True)
        self.decode_errors = 0
        self.apply_errors = 0
        self.restarts = 0
        self.batches = 0

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> None:
        self._thread.start()

    def set_endpoints(self, endpoints: dict[ReplicaId, KVEventSource]) -> None:
        """The replicas to follow now (replica -> source); the thread reconnects to match."""
        with self._lock:
            self._wanted = dict(endpoints)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _trouble(self, kind: str) -> None:
        if self._on_trouble is not None:
            try:
                self._on_trouble(kind)
            except Exception:  # counting must never be what stops the thread
                logger.exception("recording KV event trouble %r failed", kind)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._follow()
            except Exception:
                self.restarts += 1
                self._trouble("restart")
                logger.exception("KV event subscriber failed; restarting on fresh sockets in %.1f s",
                                 RESTART_PAUSE_S)
                self._stop.wait(RESTART_PAUSE_S)

    def _follow(self) -> None:
        sockets: dict[ReplicaId, tuple[KVEventSource, zmq.Socket]] = {}
        poller = zmq.Poller()
        try:
            while not self._stop.is_set():
                self._reconcile(sockets, poller)
                by_socket = {sock: replica for replica, (_, sock) in sockets.items()}
                for sock, _ in poller.poll(POLL_INTERVAL_MS):
                    self._drain(by_socket[sock], sock)
        finally:
            for _, sock in sockets.values():
                sock.close(linger=0)

    def _reconcile(self, sockets: dict[ReplicaId, tuple[KVEventSource, zmq.Socket]], poller: zmq.Poller) -> None:
        with self._lock:
            wanted = dict(self._wanted)
        for replica, (endpoint, sock) in list(sockets.items()):
            if wanted.get(replica) != endpoint:
                poller.unregister(sock)
                sock.close(linger=0)
                del sockets[replica]
        for replica, source in wanted.items():
            if replica in sockets or self._refused.get(replica) == source:
                continue
            sock = self._context.socket(zmq.SUB)
            try:
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                if source.secure:
                    secure_subscriber(sock, self._secret())
                sock.connect(source.address)
            except (zmq.ZMQError, ClusterSecretError) as error:  # a source it cannot use, until it changes
                sock.close(linger=0)
                self._refused[replica] = source
                self._trouble("connect")
                logger.warning("cannot follow the KV events of %s at %s: %s", replica, source.address, error)
                continue
            poller.register(sock, zmq.POLLIN)
            sockets[replica] = (source, sock)

    def _drain(self, replica: ReplicaId, sock: zmq.Socket) -> None:
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                if len(frames) != 3:
                    raise KVEventDecodeError(f"expected [topic, seq, payload], got {len(frames)} frames")
                batch = decode_payload(decode_seq(frames[1]), frames[2])
            except Exception as error:  # a decoder bug counts as a bad message, never a dead thread
                self.decode_errors += 1
                self._trouble("decode")
                logger.warning("dropping a KV event message from %s: %s: %s", replica, type(error).__name__,
                               error)
                continue
            self.batches += 1
            try:
                self._on_batch(replica, batch)
            except Exception:
                self.apply_errors += 1
                self._trouble("apply")
                logger.exception("applying a KV event batch from %s failed; dropped", replica)
