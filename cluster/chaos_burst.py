"""A burst of chat requests sent at once, each timed from its send to its response's status line.

Time to refusal is a property of the server, so the client must not be what is slow: an HTTP client
library handling hundreds of streams in one Python process spends seconds of its own CPU per round of
events, and a refusal then waits in the client, not in the server (700 streams through httpx measured
refusals of 10-20 s that the server had sent within 100 ms). So this client connects every socket first,
writes every request in one pass, and does no more per request than read the status line and headers,
then the body to the end with a plain byte search for the stream's end (`Connection: close`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from cluster.chaos_load import chaos_prompt

CONNECT_CONCURRENCY = 64
_FINISHED = re.compile(rb'"finish_reason":\s*"')
_ERROR_EVENT = re.compile(rb'data: \{"error"')


@dataclass(slots=True)
class BurstOutcome:
    index: int
    status: int  # 0: no status line (connection failed or closed first)
    seconds: float  # from the request's write to its status line
    retry_after: str | None
    completed: bool  # a 200 whose stream ended with a finish reason, [DONE] and no error event
    error: str | None


def _request_bytes(host: str, path: str, model: str, index: int, max_tokens: int) -> bytes:
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": chaos_prompt(index)}],
                       "max_tokens": max_tokens, "temperature": 0, "stream": True}).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode() + body


async def send_burst(base_url: str, model: str, requests: int, max_tokens: int, first_index: int = 0,
                     timeout_s: float = 3600.0) -> list[BurstOutcome]:
    """`requests` streamed chat requests written together; every one gets an outcome."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    path = url.path.rstrip("/") + "/chat/completions"
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | BaseException:
        async with gate:
            try:
                return await asyncio.open_connection(host, port)
            except OSError as error:
                return error

    connections = await asyncio.gather(*(connect() for _ in range(requests)))
    payloads = [_request_bytes(f"{host}:{port}", path, model, first_index + i, max_tokens) for i in range(requests)]
    sent_at: list[float] = []
    for connection, payload in zip(connections, payloads, strict=True):  # one pass, no awaits between
        if not isinstance(connection, BaseException):
            connection[1].write(payload)
        sent_at.append(time.monotonic())

    async def outcome(i: int) -> BurstOutcome:
        connection = connections[i]
        if isinstance(connection, BaseException):
            return BurstOutcome(first_index + i, 0, 0.0, None, False, f"connect: {connection}")
        reader, writer = connection
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout_s)
            seconds = time.monotonic() - sent_at[i]
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await asyncio.wait_for(reader.read(), timeout_s)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, IndexError) as error:
            return BurstOutcome(first_index + i, 0, time.monotonic() - sent_at[i], None, False,
                                f"{type(error).__name__}: {error}")
        finally:
            writer.close()
        completed = (status == 200 and b"data: [DONE]" in body and _FINISHED.search(body) is not None
                     and _ERROR_EVENT.search(body) is None)
        error = None if completed else body[-300:].decode(errors="replace")
        return BurstOutcome(first_index + i, status, seconds, headers.get("retry-after"), completed, error)

    return list(await asyncio.gather(*(outcome(i) for i in range(requests))))
