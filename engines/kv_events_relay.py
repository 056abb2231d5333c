"""KV events for routers on other nodes: the engine's events relayed over ZMQ CURVE.

On its own node an engine publishes on a private Unix socket (engines/kv_events_endpoint.py). A router
on another node (the ingress on the head, replicas on GPU nodes) can only reach it over the network, and
the events carry every prompt's token ids. So with `engine.kv_events_network: cluster` the replica
relays its engine's events onto a TCP socket on its node's address that speaks ZMQ's CURVE security:
the stream is encrypted, and the relay accepts only subscribers that prove they hold the cluster's
client key. Both key pairs are derived from the cluster's secret, Ray's authentication token (token
mode, which `warmserve up` turns on), which every node of the cluster already holds; nothing else has to
be distributed, and a process without the token can neither read the events nor subscribe.

Beside the events, the relay answers replay requests (vLLM's replay protocol, engines/kv_event_replay.py)
on a second CURVE socket by asking the engine's local replay socket, so a router on another node can
resynchronise after a gap as a router on the same node does.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils import z85

from engines.kv_event_codec import REPLAY_END_SEQ

SERVER_LABEL = b"warmserve kv-events relay server v1"
CLIENT_LABEL = b"warmserve kv-events relay client v1"
DEFAULT_TOKEN_PATH = Path.home() / ".ray" / "auth_token"
# How long one relayed replay may wait on the engine's replay socket for its next message.
REPLAY_STEP_TIMEOUT_S = 5.0


class ClusterSecretError(RuntimeError):
    """No cluster secret to derive the relay's keys from (Ray runs without token authentication)."""


@dataclass(frozen=True, slots=True)
class CurveKeys:
    public: bytes  # z85, 40 characters
    secret: bytes


def derive_keys(cluster_secret: bytes, label: bytes) -> CurveKeys:
    """A CURVE key pair that only a holder of `cluster_secret` can compute."""
    secret = z85.encode(hmac.new(cluster_secret, label, hashlib.sha256).digest())
    return CurveKeys(zmq.curve_public(secret), secret)


def cluster_secret() -> bytes:
    """Ray's authentication token, where Ray itself looks for it."""
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    if not token:
        path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or DEFAULT_TOKEN_PATH)
        try:
            token = path.read_text().strip()
        except OSError:
            token = ""
    if not token:
        raise ClusterSecretError(
            "KV events across nodes (engine.kv_events_network: cluster) are encrypted with keys derived from "
            "Ray's authentication token, and none was found (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
            f"{DEFAULT_TOKEN_PATH}): run Ray with RAY_AUTH_MODE=token, as `warmserve up` does")
    return token.encode()


class _OnlyClusterClients:
    """ZAP credentials check: the one client key derived from the cluster secret."""

    def __init__(self, client_public: bytes) -> None:
        self._client_public = client_public

    def callback(self, domain: str, key: bytes) -> bool:
        return hmac.compare_digest(z85.encode(key) if len(key) == 32 else key, self._client_public)


class KVEventsRelay:
    """Forwards the engine's events from its local socket to a CURVE-secured PUB socket on `host`, and
    (with `local_replay_address`) replay requests to the engine's local replay socket."""

    def __init__(self, local_address: str, host: str, secret: bytes, local_replay_address: str | None = None) -> None:
        self._server = derive_keys(secret, SERVER_LABEL)
        self._context = zmq.Context()
        self._authenticator = ThreadAuthenticator(self._context)
        self._authenticator.start()
        client_public = derive_keys(secret, CLIENT_LABEL).public
        self._authenticator.configure_curve_callback("*", credentials_provider=_OnlyClusterClients(client_public))
        self._publisher, self.address = self._curve_server_socket(zmq.PUB, host)
        self._subscriber = self._context.socket(zmq.SUB)
        self._subscriber.linger = 0
        self._subscriber.subscribe(b"")
        self._subscriber.connect(local_address)
        self._threads = [threading.Thread(target=self._forward, name="kv-events-relay", daemon=True)]
        self.replay_address: str | None = None
        if local_replay_address is not None:
            self._local_replay_address = local_replay_address
            self._replay_frontend, self.replay_address = self._curve_server_socket(zmq.ROUTER, host)
            self._threads.append(threading.Thread(target=self._serve_replays, name="kv-events-relay-replay",
                                                  daemon=True))
        for thread in self._threads:
            thread.start()

    def _curve_server_socket(self, kind: int, host: str) -> tuple[zmq.Socket, str]:
        sock = self._context.socket(kind)
        sock.curve_secretkey = self._server.secret
        sock.curve_publickey = self._server.public
        sock.curve_server = True
        sock.linger = 0
        port = sock.bind_to_random_port(f"tcp://{host}")
        return sock, f"tcp://{host}:{port}"

    def _forward(self) -> None:
        try:
            zmq.proxy(self._subscriber, self._publisher)
        except zmq.ContextTerminated:
            pass
        finally:
            self._subscriber.close()
            self._publisher.close()

    def _serve_replays(self) -> None:
        """One request at a time: [client, b"", start_seq] in, the engine's answer frames out to that client."""
        try:
            while True:
                frames = self._replay_frontend.recv_multipart()
                if len(frames) == 3:  # anything else is not a replay request: ignored, as vLLM does
                    self._relay_one_replay(frames[0], frames[2])
        except zmq.ContextTerminated:
            pass
        finally:
            self._replay_frontend.close()

    def _relay_one_replay(self, client: bytes, start_seq: bytes) -> None:
        engine = self._context.socket(zmq.DEALER)
        engine.linger = 0
        try:
            engine.connect(self._local_replay_address)
            engine.send_multipart([b"", start_seq])
            deadline = time.monotonic() + REPLAY_STEP_TIMEOUT_S
            while engine.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                answer = engine.recv_multipart()  # [b"", topic, seq, payload]
                self._replay_frontend.send_multipart([client, *answer])
                if len(answer) != 4 or answer[2] == REPLAY_END_SEQ:
                    return
                deadline = time.monotonic() + REPLAY_STEP_TIMEOUT_S
            # The engine did not finish its answer: the client times out and follows live events only.
        finally:
            engine.close()

    def close(self) -> None:
        self._authenticator.stop()
        self._context.term()  # ends the proxy and the replay thread, which close their sockets
        for thread in self._threads:
            thread.join(timeout=5)


def secure_subscriber(socket: zmq.Socket, secret: bytes) -> None:
    """Make a SUB socket able to follow a relay of this cluster, or a DEALER able to ask its replay socket
    (before it connects)."""
    client, server = derive_keys(secret, CLIENT_LABEL), derive_keys(secret, SERVER_LABEL)
    socket.curve_secretkey = client.secret
    socket.curve_publickey = client.public
    socket.curve_serverkey = server.public
