"""Tracing and logging settings (docs/operations.md, "Tracing" and "Logs")."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from configs.base import StrictModel


class TracingConfig(StrictModel):
    """OpenTelemetry traces over OTLP/HTTP (protobuf); off unless `otlp_endpoint` is set."""

    # The collector's traces URL, e.g. http://127.0.0.1:4318/v1/traces. None: no spans are recorded,
    # though a client's `traceparent` is still honoured and its trace id returned.
    otlp_endpoint: str | None = Field(default=None, min_length=1, max_length=2048)
    service_name: str = Field(default="warmserve", min_length=1, max_length=128)
    # Share of new traces recorded (parent-based: a sampled client trace is always recorded).
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    # Longest a finished span waits in the batch before export.
    export_delay_s: float = Field(default=1.0, gt=0, le=60)


class LoggingConfig(StrictModel):
    # "json": one JSON object per line from warmserve's loggers, with request_id and trace_id fields.
    format: Literal["text", "json"] = "text"
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Prompt and completion text in logs: off, since prompts often hold personal or secret data.
    log_prompts: bool = False


class ObservabilityConfig(StrictModel):
    tracing: TracingConfig = TracingConfig()
    logging: LoggingConfig = LoggingConfig()
