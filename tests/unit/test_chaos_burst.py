"""The burst client against a small real HTTP server: status lines timed, streams judged by their end."""

from __future__ import annotations

import asyncio

from cluster.chaos_burst import send_burst

SSE_DONE = (b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n'
            b'data: {"choices":[{"delta":{},"finish_reason":"length"}]}\n\ndata: [DONE]\n\n')
SSE_ERROR = b'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\ndata: {"error":{"message":"x"}}\n\n'


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = await reader.readexactly(length)
    number = int(body.split(b"number ")[1].split(b".")[0])  # the chaos prompt's index
    if number % 3 == 0:
        writer.write(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 2\r\n\r\n{}")
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(SSE_DONE if number % 3 == 1 else SSE_ERROR)
    await writer.drain()
    writer.close()


def test_each_request_gets_its_status_time_and_whether_its_stream_ended_well() -> None:
    async def main():  # type: ignore[no-untyped-def]
        server = await asyncio.start_server(_serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await send_burst(f"http://127.0.0.1:{port}/v1", "m", 9, 4)

    outcomes = asyncio.run(main())
    assert [o.index for o in outcomes] == list(range(9))
    refused = [o for o in outcomes if o.status == 503]
    assert [o.index for o in refused] == [0, 3, 6] and all(o.retry_after == "2" for o in refused)
    assert [o.index for o in outcomes if o.completed] == [1, 4, 7]
    assert all(o.status == 200 and not o.completed and "error" in (o.error or "") for o in outcomes
               if o.index % 3 == 2)
    assert all(0 <= o.seconds < 5 for o in outcomes)


def test_a_refused_connection_is_an_outcome_not_an_exception() -> None:
    outcomes = asyncio.run(send_burst("http://127.0.0.1:9/v1", "m", 3, 4))  # the discard port: nothing listens
    assert [(o.status, o.completed) for o in outcomes] == [(0, False)] * 3
    assert all(o.error and o.error.startswith("connect") for o in outcomes)
