"""A tiny OpenAI-style streaming server (stdlib only) for load-test tests that need no Ray cluster.

Streams `max_tokens` one-word chunks `token_delay_s` apart after `first_token_delay_s`, then a usage chunk and
[DONE]. Lists STUB_MODEL and "reject"; a request for "reject" gets a 400 with an OpenAI error body, to test
failure reporting.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STUB_MODEL = "stub-model"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else Nagle + delayed ACKs hold small SSE writes for ~40 ms
    first_token_delay_s = 0.01
    token_delay_s = 0.002

    def log_message(self, *_: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802
        payload = json.dumps({"object": "list", "data": [{"id": STUB_MODEL, "object": "model"},
                                                      {"id": "reject", "object": "model"}]}).encode()
        self.send_response(200 if self.path.endswith("/v1/models") else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body.get("model") == "reject":
            payload = json.dumps({"error": {"message": "model 'reject' not found", "type": "NotFoundError",
                                            "param": "model", "code": 404}}).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        chat = self.path.endswith("/chat/completions")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        tokens = int(body.get("max_tokens", 8))
        time.sleep(self.first_token_delay_s)
        for index in range(tokens):
            choice = {"index": 0, "delta": {"content": f" w{index}"}} if chat else {"index": 0, "text": f" w{index}"}
            self._chunk({"choices": [choice]})
            time.sleep(self.token_delay_s)
        self._chunk({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": tokens,
                                              "prompt_tokens_details": {"cached_tokens": 0}}})
        self._write(b"data: [DONE]\n\n")
        self._write(b"")

    def _chunk(self, payload: dict[str, object]) -> None:
        self._write(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _write(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@contextmanager
def stub_server() -> Iterator[str]:
    """Serve on a free loopback port; yields the root URL (no /v1)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
