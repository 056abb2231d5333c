"""Fuzzing every route in the served OpenAPI document (`/openapi.json`) with schemathesis, on the fake-engine
cluster over real HTTP: no request may get a 5xx, every 4xx must carry the API's error body (OpenAI's
`{"error": {"message", "type", ...}}`; KServe's `{"error": "..."}` under `/v2`), and every answer must be one
the document describes (status code, content type, body schema).

Bounded for CI (about 340 requests, under a minute here): a fixed number of generated requests per operation,
a third each schema-valid as generated, schema-valid and steered into this server's limits (its model, `n`,
short completions) so they run on the engine, and schema-violating. Examples are drawn afresh each run (no
example database); failures are collected, not raised at the first, and listed with the request that caused
each. Inputs the generators never produce (lone surrogates, deep nesting) have their own tests below.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.core import NOT_SET
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cluster.config_check import load_checked_config
from tests.conftest import DeployedApp

pytestmark = pytest.mark.integration

# Generated requests per operation and mode: the completion routes run the (fake) engine, so they get more.
EXAMPLES = {"/v1/chat/completions": 120, "/v1/completions": 120}
DEFAULT_EXAMPLES = 10
# A longer hunt than CI's, locally: WARMSERVE_FUZZ_SCALE=10 runs ten times as many.
SCALE = float(os.environ.get("WARMSERVE_FUZZ_SCALE", "1"))
REQUEST_TIMEOUT_S = 60
CONFORMANCE_CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_LISTED = 25
# Steered token-id prompts stay below this (any model's vocabulary is larger).
SMALL_TOKEN_IDS = 100


def _is_openai_error(body: object) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return (isinstance(error, dict) and isinstance(error.get("message"), str) and bool(error["message"])
            and isinstance(error.get("type"), str) and bool(error["type"]))


def _is_kserve_error(body: object) -> bool:
    return isinstance(body, dict) and isinstance(body.get("error"), str) and bool(body["error"])


def _problems(case: schemathesis.Case, response: requests.Response) -> list[tuple[str, str]]:
    """(kind, detail) of everything wrong with one answer."""
    problems = []
    if response.status_code >= 500:
        problems.append((f"server error {response.status_code}", ""))
    elif response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        kserve = case.path == "/v2" or case.path.startswith("/v2/")
        if not (_is_kserve_error(body) if kserve else _is_openai_error(body)):
            problems.append((f"{response.status_code} without the {'KServe' if kserve else 'OpenAI'} error body", ""))
    try:
        case.validate_response(response, checks=CONFORMANCE_CHECKS)
    except FailureGroup as group:  # one per failed check
        problems += [(f"not as documented: {f.title}", f.message.strip()[:400]) for f in group.exceptions]
    return problems


def _request_text(case: schemathesis.Case) -> str:
    parts = [f"{case.method} {case.formatted_path}"]
    if case.query:
        parts.append(f"query={case.query!r}")
    if case.headers:
        parts.append(f"headers={dict(case.headers)!r}")
    if case.body is not NOT_SET:
        body = case.body if isinstance(case.body, (bytes, str)) else json.dumps(case.body, default=repr)
        parts.append(f"body={body[:600]!r}")
    return " ".join(parts)


def _steered(body: dict[str, Any], model: str, max_n: int) -> dict[str, Any]:
    """A schema-valid body pulled into what this server accepts (its model, `n` and context limits,
    non-empty stops, token ids in the vocabulary), so it runs on the engine instead of ending in a 4xx."""
    body = {**body, "model": model}
    for name, bound in (("n", max_n), ("max_tokens", 32), ("max_completion_tokens", 32)):
        value = body.get(name)  # integers may come as floats (195.0), which the API accepts too
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > bound:
            body[name] = 1 + int(value) % bound
    stop = body.get("stop")
    if isinstance(stop, list):
        body["stop"] = [s for s in stop if s][:4] or None
    elif stop == "":
        body["stop"] = None
    prompt = body.get("prompt")
    if isinstance(prompt, str) and len(prompt) > 200:
        body["prompt"] = prompt[:200]
    elif isinstance(prompt, list):
        body["prompt"] = [t % SMALL_TOKEN_IDS for t in prompt[:200] if isinstance(t, int)] or [1]
    return body


def _fuzz_operation(operation: Any, examples: int, model: str, max_n: int, base_url: str,
                    session: requests.Session, failures: dict[tuple[str, str], str], counts: dict[str, int]) -> None:
    positive = operation.as_strategy(generation_mode=GenerationMode.POSITIVE)
    cases = st.one_of(  # a third each: steered to the engine, schema-valid as generated, schema-violating
        st.tuples(positive, st.just(True)),
        st.tuples(positive, st.just(False)),
        st.tuples(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), st.just(False)),
    )

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(drawn=cases)
    def run(drawn: tuple[schemathesis.Case, bool]) -> None:
        case, steer = drawn
        if steer and isinstance(case.body, dict):
            case.body = _steered(case.body, model, max_n)
        response = case.call(base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S)
        key = f"{case.method} {case.path} {response.status_code}"
        counts[key] = counts.get(key, 0) + 1
        if os.environ.get("WARMSERVE_FUZZ_VERBOSE") and response.status_code >= 400:
            print(key, "steered" if steer else "", response.text[:200])
        for kind, detail in _problems(case, response):
            key = (f"{case.method} {case.path}", kind)
            if key not in failures:  # the first example of each kind of failure per operation
                failures[key] = (f"{key[0]}: {kind} {detail}\n    request: {_request_text(case)}\n"
                                 f"    answer: {response.status_code} {response.text[:300]!r}")

    run()


def test_fuzz_every_documented_operation(fake_app: DeployedApp) -> None:
    schema = schemathesis.openapi.from_url(f"{fake_app.root_url}/openapi.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/health", "/ready", "/v1/models", "/v1/chat/completions",
                                              "/v1/completions"}
    max_n = load_checked_config("test-fake").models[0].limits.max_n  # the profile fake_app deploys
    failures: dict[tuple[str, str], str] = {}
    counts: dict[str, int] = {}
    started = time.monotonic()
    with requests.Session() as session:
        for operation in operations:
            examples = max(1, round(SCALE * EXAMPLES.get(operation.path, DEFAULT_EXAMPLES)))
            _fuzz_operation(operation, examples, fake_app.model, max_n,
                            fake_app.root_url, session, failures, counts)
    elapsed = time.monotonic() - started
    print(f"\nfuzzed {len(operations)} operations with {sum(counts.values())} requests in {elapsed:.0f} s:\n"
          + json.dumps(dict(sorted(counts.items())), indent=1))
    listed = "\n".join(list(failures.values())[:MAX_LISTED])
    assert not failures, f"{len(failures)} distinct failures (first {MAX_LISTED}):\n{listed}"


def test_lone_surrogate_is_a_400_not_a_500(fake_app: DeployedApp) -> None:
    # JSON may escape a lone UTF-16 surrogate, which no tokenizer (or UTF-8 error body) can take.
    raw = ('{"model": "%s", "messages": [{"role": "user", "content": "hi \\ud800"}]}' % fake_app.model).encode()
    reply = requests.post(f"{fake_app.base_url}/chat/completions", data=raw, timeout=REQUEST_TIMEOUT_S,
                          headers={"content-type": "application/json"})
    assert reply.status_code == 400, reply.text
    assert reply.json()["error"]["param"] == "messages[0].content"
    raw = b'{"model": "\\udfff", "prompt": "hi"}'
    reply = requests.post(f"{fake_app.base_url}/completions", data=raw, timeout=REQUEST_TIMEOUT_S,
                          headers={"content-type": "application/json"})
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "model", reply.text


def test_deeply_nested_json_is_a_400_not_a_500(fake_app: DeployedApp) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000  # json.loads recurses once per level
    for path in ("/chat/completions", "/completions"):
        reply = requests.post(f"{fake_app.base_url}{path}", data=deep, timeout=REQUEST_TIMEOUT_S,
                              headers={"content-type": "application/json"})
        assert reply.status_code == 400 and _is_openai_error(reply.json()), (path, reply.text)
