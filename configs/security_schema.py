"""Who may call the API and how much (docs/operations.md, "Security model").

With `security.api_keys` empty the API is open (the loopback-only default). With keys, every `/v1` and
`/v2` route needs `Authorization: Bearer <key>`; each key may carry its own rate limits.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import Field, model_validator

from configs.base import StrictModel

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Shorter secrets are guessable online; OpenAI's own keys are far longer.
MIN_KEY_CHARS = 16


class ApiKeyConfig(StrictModel):
    """One API key: exactly one of `key`, `key_sha256`, `key_env` or `key_file` says what it is.

    Prefer `key_sha256` (the config then holds no secret) or `key_env`/`key_file`; `key` in clear is for
    tests and throwaway clusters. References are resolved when the app is built (`warmserve up`); only
    SHA-256 digests reach the ingress.
    """

    # Names the key in logs, metrics and errors (the key itself is never shown).
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    key: str | None = Field(default=None, min_length=MIN_KEY_CHARS, max_length=512)
    key_sha256: str | None = None
    key_env: str | None = Field(default=None, min_length=1, max_length=256)
    key_file: str | None = Field(default=None, min_length=1, max_length=4096)
    # Requests per second this key may start (a token bucket holding `burst` requests). None: no bound.
    requests_per_s: float | None = Field(default=None, gt=0, le=1_000_000)
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    # Prompt + completion tokens per minute. A request reserves prompt + n x max_tokens when admitted and
    # gets back what it did not generate when it ends. None: no bound.
    tokens_per_min: int | None = Field(default=None, ge=1, le=10**12)
    # HTTP requests of this key in flight at once (streams count until they end). None: no bound.
    max_concurrent: int | None = Field(default=None, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ApiKeyConfig:
        given = [f for f in ("key", "key_sha256", "key_env", "key_file") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"api key {self.name!r}: give exactly one of key, key_sha256, key_env, key_file "
                             f"(got {given or 'none'})")
        if self.key_sha256 is not None and not SHA256_HEX.match(self.key_sha256):
            raise ValueError(f"api key {self.name!r}: key_sha256 must be 64 lowercase hex digits "
                             "(`printf %s KEY | sha256sum`)")
        if self.burst is not None and self.requests_per_s is None:
            raise ValueError(f"api key {self.name!r}: burst needs requests_per_s")
        return self


class SecurityConfig(StrictModel):
    api_keys: list[ApiKeyConfig] = Field(default=[], max_length=10_000)
    # Whether scraping /metrics also needs a key (when keys are set). Prometheus usually scrapes from
    # inside the cluster network, so it is open by default, like /health and /ready.
    metrics_require_key: bool = False
    # Largest request body any route reads; larger ones get 413 before the body is parsed. It must hold
    # a base64 image of the vision models' max_image_bytes (checked in ClusterConfig).
    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024, le=2**31)
    # Request body bytes one ingress replica holds at once, over every request in flight: beyond it a new
    # request gets 503 with Retry-After before its body is read. Bounds the memory that large bodies can
    # take (1,024 requests x 32 MiB would be 32 GiB); at least one body of `max_body_bytes`.
    max_body_bytes_in_flight: int = Field(default=256 * 1024 * 1024, ge=1024, le=2**40)

    @model_validator(mode="after")
    def _in_flight_holds_one_body(self) -> SecurityConfig:
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(f"security.max_body_bytes_in_flight ({self.max_body_bytes_in_flight}) must hold at "
                             f"least one body of security.max_body_bytes ({self.max_body_bytes})")
        return self

    @model_validator(mode="after")
    def _unique_names(self) -> SecurityConfig:
        names = [k.name for k in self.api_keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"security.api_keys: duplicate key names {duplicates}")
        return self


class ApiKeyError(ValueError):
    """A key reference that cannot be resolved (unset variable, unreadable or short file)."""


def read_key_secret(config: ApiKeyConfig) -> str | None:
    """The key in clear, read from wherever the config says; None when it holds only the key's digest.
    Run where the config is loaded and the app built (`warmserve up`), never in a replica."""
    if config.key_sha256 is not None:
        return None
    if config.key is not None:
        return config.key
    if config.key_env is not None:
        secret = os.environ.get(config.key_env, "").strip()
        where = f"environment variable {config.key_env}"
    else:
        path = Path(config.key_file or "").expanduser()
        try:
            secret = path.read_text().strip()
        except OSError as error:
            raise ApiKeyError(f"api key {config.name!r}: cannot read key_file {path}: {error.strerror}") from None
        where = f"key_file {path}"
    if len(secret) < MIN_KEY_CHARS:
        raise ApiKeyError(f"api key {config.name!r}: {where} is unset or shorter than {MIN_KEY_CHARS} characters")
    return secret
