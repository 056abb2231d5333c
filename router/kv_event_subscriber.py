"""One ZMQ SUB socket per LLM replica's KV event publisher, read on a background thread.

Decoding (msgpack only, never pickle) and socket work stay off the request path's event loop; each decoded
batch is handed to `on_batch(replica, batch)`, which the owner makes thread-safe (the Serve adapter hops
it onto its loop). Replicas come and go through `set_endpoints`; a malformed message is counted and
dropped, and the next good one resynchronises through the index's sequence-gap reset.

Resynchronising: a SUB socket only sees what is published after it joined, so a router that starts late,
or that lost messages (a sequence gap, which resets the index's view of that replica), would never see
the blocks that stay cached. So when it starts following a replica, and when its owner asks
(`request_resync`, after a gap), the thread asks the publisher's replay socket for every batch it still
buffers (vLLM keeps the last 10,000 steps), tells the owner (`on_replay`: forget what you hold for that
replica), hands those batches over in order, and drops live batches it has thereby already handed over.

The thread must outlive anything a publisher sends or the owner's callback does: if it stopped, the
router's index would freeze silently. So every message is handled inside its own `try`, and an
unexpected error in the loop itself (a socket that cannot connect, a ZMQ failure) restarts the loop on
fresh sockets after a pause. Each kind of trouble is counted and told to `on_trouble(kind)`, which the
owner turns into metrics; `alive` says whether the thread runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from engines.kv_event_codec import REPLAY_END_SEQ, KVEventDecodeError, decode_payload, decode_seq
from engines.kv_events_relay import ClusterSecretError, cluster_secret, secure_subscriber
from engines.types import KVEventBatch
from router.prefix_index import ReplicaId

@dataclass(frozen=True, slots=True)
class KVEventSource:
    """Where one replica's events are read: its engine's local socket, or (`secure`) the CURVE relay of a
    replica on another node (engines/kv_events_relay.py)."""

    address: str
    secure: bool = False
    replay: str | None = None  # the publisher's replay socket (or, `secure`, its relay's), for resynchronising


OnBatch = Callable[[ReplicaId, KVEventBatch], None]
OnReplay = Callable[[ReplicaId], None]
REPLAY_TIMEOUT_S = 5.0
# "decode" (a malformed message), "apply" (the owner's callback failed), "connect" (an endpoint ZMQ
# refused), "replay" (a replay request that got no complete answer), "restart" (the loop restarted).
OnTrouble = Callable[[str], None]
TROUBLE_KINDS = ("decode", "apply", "connect", "replay", "restart")
POLL_INTERVAL_MS = 100
RESTART_PAUSE_S = 0.5
logger = logging.getLogger("warmserve.router.events")


class KVEventSubscriber:
    def __init__(self, on_batch: OnBatch, context: zmq.Context | None = None,
                 on_trouble: OnTrouble | None = None, secret: Callable[[], bytes] = cluster_secret,
                 on_replay: OnReplay | None = None) -> None:
        self._on_batch = on_batch
        self._on_replay = on_replay
        self._resync: set[ReplicaId] = set()  # replicas whose owner asked for a replay (guarded by _lock)
        self._replayed_to: dict[ReplicaId, int] = {}  # the last seq a replay handed over, per replica
        self.replays = 0
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

    def request_resync(self, replica: ReplicaId) -> None:
        """Replay `replica`'s buffered events (its owner saw a gap); thread-safe."""
        with self._lock:
            self._resync.add(replica)

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
                if not sockets:  # zmq's poll returns at once with nothing registered: it would spin
                    self._stop.wait(POLL_INTERVAL_MS / 1000)
                    continue
                by_socket = {sock: replica for replica, (_, sock) in sockets.items()}
                for sock, _ in poller.poll(POLL_INTERVAL_MS):
                    self._drain(by_socket[sock], sock)
        finally:
            for _, sock in sockets.values():
                sock.close(linger=0)

    def _reconcile(self, sockets: dict[ReplicaId, tuple[KVEventSource, zmq.Socket]], poller: zmq.Poller) -> None:
        with self._lock:
            wanted = dict(self._wanted)
            resync, self._resync = self._resync, set()
        for replica, (endpoint, sock) in list(sockets.items()):
            if wanted.get(replica) != endpoint:
                poller.unregister(sock)
                sock.close(linger=0)
                del sockets[replica]
                self._replayed_to.pop(replica, None)
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
            resync.add(replica)  # what it cached before we joined
        for replica in resync:
            if replica in sockets and sockets[replica][0].replay is not None:
                self._replay(replica, sockets[replica][0])

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
            if batch.seq <= self._replayed_to.get(replica, -1):
                continue  # handed over already, by the replay
            self._deliver(replica, batch)

    def _deliver(self, replica: ReplicaId, batch: KVEventBatch) -> None:
        self.batches += 1
        try:
            self._on_batch(replica, batch)
        except Exception:
            self.apply_errors += 1
            self._trouble("apply")
            logger.exception("applying a KV event batch from %s failed; dropped", replica)

    def _replay(self, replica: ReplicaId, source: KVEventSource) -> None:
        """Every batch the publisher still buffers, in order; nothing when it does not answer in time (the
        live stream goes on, and the next gap asks again)."""
        batches = self._fetch_replay(replica, source)
        if batches is None:
            return
        self.replays += 1
        if self._on_replay is not None:
            self._on_replay(replica)
        for batch in batches:
            self._deliver(replica, batch)
        if batches:
            self._replayed_to[replica] = batches[-1].seq

    def _fetch_replay(self, replica: ReplicaId, source: KVEventSource) -> list[KVEventBatch] | None:
        dealer = self._context.socket(zmq.DEALER)
        dealer.linger = 0
        batches: list[KVEventBatch] = []
        address = source.replay
        try:
            if source.secure:
                secure_subscriber(dealer, self._secret())
            dealer.connect(address)
            dealer.send_multipart([b"", (0).to_bytes(8, "big")])
            deadline = time.monotonic() + REPLAY_TIMEOUT_S
            while True:
                left_ms = int((deadline - time.monotonic()) * 1000)
                if left_ms <= 0 or not dealer.poll(left_ms):
                    raise TimeoutError(f"no complete answer within {REPLAY_TIMEOUT_S:.0f} s")
                frames = dealer.recv_multipart()
                if len(frames) != 4:
                    raise KVEventDecodeError(f"expected [b'', topic, seq, payload], got {len(frames)} frames")
                if frames[2] == REPLAY_END_SEQ:
                    return batches
                batches.append(decode_payload(decode_seq(frames[2]), frames[3]))
        except Exception as error:  # an old publisher without replay, a malformed answer: live events only
            self._trouble("replay")
            logger.warning("replaying the KV events of %s from %s failed (%s: %s); following live events only",
                           replica, address, type(error).__name__, error)
            return None
        finally:
            dealer.close(linger=0)
