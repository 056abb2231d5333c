"""Logs of warmserve's own loggers, text or JSON, with the request id and trace id on every line written
while a request is being served (docs/operations.md, "Logs").

The ids live in context variables, set where a request starts in this process (the ingress, the LLM
replica), so every log call below, failover and engine warnings included, carries them without being
passed anything. Prompt and completion text never reach a log unless `log_prompts` is on.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

from configs.observability_schema import LoggingConfig

LOGGER_ROOT = "warmserve"
_REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("warmserve_request_id", default=None)
_TRACE_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("warmserve_trace_id", default=None)
_HANDLER_NAME = "warmserve-request-logging"


def _ids() -> tuple[contextvars.ContextVar[str | None], contextvars.ContextVar[str | None]]:
    """Looked up through the module at call time: Serve may ship a caller to its replica by value
    (cloudpickle), and a captured context variable would arrive as a private copy."""
    import deployments.request_logging as module

    return module._REQUEST_ID, module._TRACE_ID


def bind_request(request_id: str, trace_id: str | None) -> None:
    """Tag every later log line of the current task (and tasks it starts) with these ids."""
    request_var, trace_var = _ids()
    request_var.set(request_id)
    trace_var.set(trace_id)


class _RequestIds(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_var, trace_var = _ids()
        record.request_id = request_var.get()
        record.trace_id = trace_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__()
        self._component = component

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "component": self._component,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None), "trace_id": getattr(record, "trace_id", None),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self, component: str) -> None:
        super().__init__(f"%(asctime)s %(levelname)s %(name)s [{component}] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id, trace_id = getattr(record, "request_id", None), getattr(record, "trace_id", None)
        if request_id:
            line += f" request_id={request_id}"
        if trace_id:
            line += f" trace_id={trace_id}"
        return line


def configure_logging(config: LoggingConfig, component: str) -> None:
    """Give warmserve's loggers in this process one stderr handler (Ray files a replica's stderr in its
    worker log) in the configured format; calling it again replaces that handler."""
    logger = logging.getLogger(LOGGER_ROOT)
    for handler in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(_RequestIds())
    handler.setFormatter(JsonFormatter(component) if config.format == "json" else TextFormatter(component))
    logger.addHandler(handler)
    logger.setLevel(config.level)
    logger.propagate = False  # one line per record, not a second copy through Ray's root handler
