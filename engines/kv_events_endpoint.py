"""Where an engine publishes its KV cache events: a Unix socket in a folder only its user can open.

`BlockStored` events carry the token ids of every cached block, so the stream holds every prompt and
completion the engine serves. It is therefore never put on the network: the engine binds an `ipc://`
socket in a fresh 0700 folder, and routers on the same node (the ingress replicas) connect to it through
the file system. vLLM's publisher binds `ipc://` endpoints itself (it connects to plain tcp ones). Beside
it, the publisher's replay socket (vLLM's ROUTER, which answers "every batch since seq N" from a buffer of
recent steps) lets a router that joined late or lost messages rebuild its view of the cache.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

IPC_PREFIX = "ipc://"


class KVEventsEndpoint:
    """A private endpoint for one engine; `close` removes its folder."""

    def __init__(self) -> None:
        # mkdtemp makes the folder readable, writable and searchable by its owner only (0700).
        self._folder = Path(tempfile.mkdtemp(prefix="warmserve-kv-"))
        self.address = f"{IPC_PREFIX}{self._folder / 'events.sock'}"
        self.replay_address = f"{IPC_PREFIX}{self._folder / 'replay.sock'}"

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def is_local_endpoint(endpoint: str) -> bool:
    return endpoint.startswith(IPC_PREFIX)
