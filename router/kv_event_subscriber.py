"""One ZMQ SUB socket per LLM replica's KV event publisher, read on a background thread.

Decoding (msgpack only, never pickle) and socket work stay off the request path's event loop; each decoded
batch is handed to `on_batch(replica, batch)`, which the owner makes thread-safe (the Serve adapter hops
it onto its loop). Replicas come and go through `set_endpoints`; a malformed message is counted and
dropped, and the next good one resynchronises through the index's sequence-gap reset.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import zmq

from engines.kv_event_codec import KVEventDecodeError, decode_payload, decode_seq
from engines.types import KVEventBatch
from router.prefix_index import ReplicaId

OnBatch = Callable[[ReplicaId, KVEventBatch], None]
POLL_INTERVAL_MS = 100
logger = logging.getLogger("warmserve.router.events")


class KVEventSubscriber:
    def __init__(self, on_batch: OnBatch, context: zmq.Context | None = None) -> None:
        self._on_batch = on_batch
        self._context = context or zmq.Context.instance()
        self._wanted: dict[ReplicaId, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="kv-event-subscriber", daemon=True)
        self.decode_errors = 0
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def set_endpoints(self, endpoints: dict[ReplicaId, str]) -> None:
        """The replicas to follow now (replica -> tcp endpoint); the thread reconnects to match."""
        with self._lock:
            self._wanted = dict(endpoints)

    def stop(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        sockets: dict[ReplicaId, tuple[str, zmq.Socket]] = {}
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

    def _reconcile(self, sockets: dict[ReplicaId, tuple[str, zmq.Socket]], poller: zmq.Poller) -> None:
        with self._lock:
            wanted = dict(self._wanted)
        for replica, (endpoint, sock) in list(sockets.items()):
            if wanted.get(replica) != endpoint:
                poller.unregister(sock)
                sock.close(linger=0)
                del sockets[replica]
        for replica, endpoint in wanted.items():
            if replica not in sockets:
                sock = self._context.socket(zmq.SUB)
                sock.setsockopt(zmq.SUBSCRIBE, b"")
                sock.connect(endpoint)
                poller.register(sock, zmq.POLLIN)
                sockets[replica] = (endpoint, sock)

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
            except KVEventDecodeError as error:
                self.decode_errors += 1
                logger.warning("dropping a KV event message from %s: %s", replica, error)
                continue
            self.batches += 1
            self._on_batch(replica, batch)
