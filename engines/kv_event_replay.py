"""The replay side of vLLM's KV event protocol, for the fake engine (vLLM's publisher has its own).

A router that joined late or lost messages asks "every batch since seq N" on a ROUTER socket beside the
PUB socket, and gets each buffered batch, then an end marker (engines/kv_event_codec.py,
`REPLAY_END_SEQ`). Served on a thread of its own, like vLLM's publisher thread, so a replay never waits
for the engine's loop.
"""

from __future__ import annotations

import threading
from collections import deque

import zmq

from engines.kv_event_codec import REPLAY_END_SEQ, encode_seq

# vLLM's default (`KVEventsConfig.buffer_steps`).
BUFFER_BATCHES = 10_000
POLL_MS = 100


class ReplayServer:
    def __init__(self, address: str, buffer_batches: int = BUFFER_BATCHES) -> None:
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=buffer_batches)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._socket = zmq.Context.instance().socket(zmq.ROUTER)
        self._socket.linger = 0
        self._socket.bind(address)
        self._thread = threading.Thread(target=self._serve, name="kv-event-replay", daemon=True)
        self._thread.start()

    def keep(self, seq: int, payload: bytes) -> None:
        with self._lock:
            self._buffer.append((seq, payload))

    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._socket.poll(POLL_MS):
                    continue
                frames = self._socket.recv_multipart()
                if len(frames) != 3:
                    continue  # not a replay request: ignored, as vLLM does
                client, _, start = frames
                first = int.from_bytes(start, "big")
                with self._lock:
                    batches = [(seq, payload) for seq, payload in self._buffer if seq >= first]
                for seq, payload in batches:
                    self._socket.send_multipart([client, b"", b"", encode_seq(seq), payload])
                self._socket.send_multipart([client, b"", b"", REPLAY_END_SEQ, b""])
        finally:
            self._socket.close(linger=0)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
