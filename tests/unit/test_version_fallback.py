"""A bare-name request that fails on its version before answering is answered by another version once."""

from __future__ import annotations

import asyncio
import random

import pytest
from fastapi.responses import JSONResponse, Response

from deployments.errors import APIError, internal_error, service_unavailable
from deployments.metrics import ingress_metrics
from deployments.model_resolver import ModelResolver
from deployments.version_fallback import FALLBACK_HEADER, answer_with_fallback


def _resolver(weights: dict[str, float]) -> ModelResolver[str]:
    resolver = ModelResolver({"a": "A", "m@v1": "V1", "m@v2": "V2", "m@v3": "V3"}, random.Random(5))
    resolver.set_weights(weights)
    return resolver


class _Versions:
    """`answer` for the fallback: fails on the versions in `failing` with `error`, answers on the others."""

    def __init__(self, failing: set[str], error: APIError) -> None:
        self.failing, self.error, self.calls = failing, error, list[str]()

    async def answer(self, served: str) -> Response:
        self.calls.append(served)
        if served in self.failing:
            raise self.error
        return JSONResponse({"from": served})


def _run(resolver: ModelResolver[str], versions: _Versions, name: str = "m", pinned: str | None = None,
         session: str | None = None) -> Response:
    return asyncio.run(answer_with_fallback(resolver, name, pinned, session, versions.answer))


def test_a_failing_canary_is_answered_by_the_old_version_and_counted() -> None:
    resolver = _resolver({"m@v1": 50, "m@v2": 50})
    counter = ingress_metrics().version_fallbacks.labels("m@v2")
    before = counter._value.get()
    answered = []
    for session in (f"s{i}" for i in range(40)):
        versions = _Versions({"V2"}, internal_error("engine error: InjectedRequestError"))
        response = _run(resolver, versions, session=session)
        answered.append(versions.calls)
        if versions.calls == ["V2", "V1"]:
            assert response.headers[FALLBACK_HEADER] == "v2"
        else:
            assert versions.calls == ["V1"] and FALLBACK_HEADER not in response.headers
    fell_back = sum(calls == ["V2", "V1"] for calls in answered)
    assert 5 < fell_back < 35  # about half the sessions drew the failing version
    assert counter._value.get() - before == fell_back


def test_a_version_with_no_traffic_is_not_a_fallback() -> None:
    resolver = _resolver({"m@v1": 0, "m@v2": 100, "m@v3": 0})
    versions = _Versions({"V2"}, service_unavailable("model replica unavailable", retry_after_s=1))
    with pytest.raises(APIError) as caught:
        _run(resolver, versions)
    assert caught.value.status_code == 503 and versions.calls == ["V2"]


@pytest.mark.parametrize(("name", "pinned", "error"), [
    ("m@v2", None, internal_error("x")),  # named a version: it asked for that one
    ("m", "v2", internal_error("x")),  # pinned by header
    ("m", None, APIError(400, "bad max_tokens", param="max_tokens")),  # the request itself is wrong
    ("m", None, APIError(504, "timed out", type="timeout")),  # its time is spent
    ("a", None, internal_error("x")),  # no versions at all
])
def test_no_fallback_when_the_request_asked_for_the_version_or_the_error_is_not_the_versions(
        name: str, pinned: str | None, error: APIError) -> None:
    resolver = _resolver({"m@v1": 0.001, "m@v2": 1000})  # the bare name picks v2
    versions = _Versions({"V2", "A"}, error)
    with pytest.raises(APIError) as caught:
        _run(resolver, versions, name=name, pinned=pinned)
    assert caught.value is error and len(versions.calls) == 1


def test_the_fallback_is_tried_once() -> None:
    resolver = _resolver({"m@v1": 1, "m@v2": 1000})
    versions = _Versions({"V1", "V2"}, internal_error("down"))
    with pytest.raises(APIError):
        _run(resolver, versions)
    assert versions.calls == ["V2", "V1"]
