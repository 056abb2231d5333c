"""API key resolution and matching, and the per-key token buckets (a fake clock; no Ray)."""

from __future__ import annotations

import hashlib

import pytest
from pydantic import ValidationError

from configs.security_schema import ApiKeyConfig, ApiKeyError, SecurityConfig
from deployments.api_keys import KeyVerifier, bearer_token, resolve_key
from deployments.errors import APIError
from deployments.key_limits import KeyLimiter

SECRET = "sk-test-0123456789abcdef"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_every_key_form_resolves_to_the_same_digest(tmp_path, monkeypatch) -> None:
    (tmp_path / "key").write_text(SECRET + "\n")
    monkeypatch.setenv("WS_TEST_KEY", SECRET)
    forms = [ApiKeyConfig(name="a", key=SECRET),
             ApiKeyConfig(name="a", key_sha256=hashlib.sha256(SECRET.encode()).hexdigest()),
             ApiKeyConfig(name="a", key_env="WS_TEST_KEY"),
             ApiKeyConfig(name="a", key_file=str(tmp_path / "key"))]
    assert len({resolve_key(f).sha256 for f in forms}) == 1


def test_bad_key_configs_say_what_is_wrong(monkeypatch) -> None:
    with pytest.raises(ValidationError, match="exactly one of"):
        ApiKeyConfig(name="a", key=SECRET, key_env="X")
    with pytest.raises(ValidationError, match="64 lowercase hex"):
        ApiKeyConfig(name="a", key_sha256="abc")
    with pytest.raises(ValidationError, match="at least 16"):
        ApiKeyConfig(name="a", key="short")
    with pytest.raises(ValidationError, match="duplicate key names"):
        SecurityConfig(api_keys=[ApiKeyConfig(name="a", key=SECRET), ApiKeyConfig(name="a", key=SECRET + "x")])
    monkeypatch.delenv("WS_UNSET_KEY", raising=False)
    with pytest.raises(ApiKeyError, match="WS_UNSET_KEY is unset"):
        resolve_key(ApiKeyConfig(name="a", key_env="WS_UNSET_KEY"))
    with pytest.raises(ApiKeyError, match="cannot read key_file"):
        resolve_key(ApiKeyConfig(name="a", key_file="/nonexistent/key"))


def test_verifier_matches_only_the_exact_key() -> None:
    verifier = KeyVerifier([resolve_key(ApiKeyConfig(name="a", key=SECRET)),
                            resolve_key(ApiKeyConfig(name="b", key=SECRET + "-b"))])
    assert verifier.match(SECRET).name == "a" and verifier.match(SECRET + "-b").name == "b"
    assert verifier.match(SECRET[:-1]) is None and verifier.match("") is None
    assert bearer_token("Bearer  abc ") == "abc" and bearer_token("bearer abc") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer ") is None and bearer_token(None) is None


def _limiter(clock: FakeClock, **limits: object) -> KeyLimiter:
    return KeyLimiter(resolve_key(ApiKeyConfig(name="k", key=SECRET, **limits)), clock)


def test_request_rate_refills_and_says_when_to_retry() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, requests_per_s=2.0, burst=2)
    limiter.start_request()
    limiter.start_request()
    with pytest.raises(APIError) as refused:
        limiter.start_request()
    assert refused.value.status_code == 429 and refused.value.retry_after_s == 1
    clock.now += 0.5  # one request's worth refilled
    limiter.start_request()
    assert limiter.in_flight == 3


def test_concurrency_cap_counts_requests_until_they_end() -> None:
    limiter = _limiter(FakeClock(), max_concurrent=1)
    limiter.start_request()
    with pytest.raises(APIError, match="1 requests in flight"):
        limiter.start_request()
    limiter.end_request()
    limiter.start_request()


def test_tokens_are_reserved_then_the_unused_part_given_back() -> None:
    clock = FakeClock()
    limiter = _limiter(clock, tokens_per_min=600)
    settle = limiter.reserve_tokens(500)
    with pytest.raises(APIError) as refused:
        limiter.reserve_tokens(200)
    assert refused.value.status_code == 429 and refused.value.retry_after_s == 10  # 100 short at 10/s
    settle(120)  # used 120 of the 500 reserved
    settle(0)  # settling twice gives back nothing more
    limiter.reserve_tokens(480)
    with pytest.raises(APIError):
        limiter.reserve_tokens(1)
    with pytest.raises(APIError, match="more than API key 'k' may use in a minute") as too_large:
        limiter.reserve_tokens(601)
    assert too_large.value.code == "request_too_large" and too_large.value.status_code == 400
