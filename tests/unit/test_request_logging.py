"""Structured logs: the request and trace ids on every line logged while a request is served."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from configs.observability_schema import LoggingConfig
from deployments.request_logging import bind_request, configure_logging


@pytest.fixture(autouse=True)
def _restore_text_logging():
    yield
    configure_logging(LoggingConfig(), "test")


def test_json_lines_carry_the_ids_of_the_request_being_served(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingConfig(format="json"), "ingress")
    log = logging.getLogger("warmserve.failover")

    async def serve(request_id: str) -> None:
        bind_request(request_id, f"trace-of-{request_id}")
        await asyncio.sleep(0)  # interleave the two requests
        log.warning("replica failed for %s", request_id)

    async def both() -> None:
        await asyncio.gather(serve("req-a"), serve("req-b"))

    asyncio.run(both())
    log.info("no request here")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(e["request_id"], e["trace_id"]) for e in lines] == [
        ("req-a", "trace-of-req-a"), ("req-b", "trace-of-req-b"), (None, None)]
    assert lines[0]["message"] == "replica failed for req-a" and lines[0]["component"] == "ingress"
    assert lines[0]["level"] == "WARNING" and lines[0]["logger"] == "warmserve.failover"


def test_text_lines_append_the_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(LoggingConfig(), "llm-replica")
    configure_logging(LoggingConfig(), "llm-replica")  # again: still one handler, one line per record

    async def serve() -> None:
        bind_request("cmpl-1", None)
        logging.getLogger("warmserve.replica").warning("engine slow")

    asyncio.run(serve())
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith("[llm-replica] engine slow request_id=cmpl-1")
