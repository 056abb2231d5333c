"""Failover logic of one engine request, driven by scripted fake replicas (no Ray)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from configs.reliability_schema import FailoverConfig
from deployments.replica_failures import ReplicaEngineDeadError
from deployments.resumable_generation import FailoverEvents, resumable_generation
from engines.types import GenerationRequest, OutputChunk, SamplingSpec

POLICY = FailoverConfig(retry_backoff_s=0, stall_timeout_s=0.2, first_token_timeout_s=0.5)
PROMPT = [1, 2, 3, 4]


def _continuation(context: list[int]) -> int:
    """A deterministic 'model': the next token is a function of the whole context, like greedy decoding."""
    return (sum(context) * 31 + len(context)) % 1000


def _detok(ids: list[int]) -> str:
    return "".join(f"<{i}>" for i in ids)


class ScriptedReplicas:
    """Replicas that generate by `_continuation`; each attempt's fate comes from `script` in order:
    ("ok",), ("die_after", k) (engine death after k tokens), ("stall_after", k), ("error",) (a bug),
    ("slow", seconds_per_token, k or None) (a healthy but slow stream, dying after k tokens if k is set)."""

    def __init__(self, script: list[tuple]) -> None:
        self.script = list(script)
        self.requests: list[GenerationRequest] = []

    async def start(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        attempt = len(self.requests)
        self.requests.append(request)
        fate = self.script.pop(0) if self.script else ("ok",)
        replica = f"replica-{attempt}"
        context = list(request.prompt_token_ids)
        for step in range(request.sampling.max_tokens):
            if fate[0] == "die_after" and step == fate[1]:
                raise ReplicaEngineDeadError("engine died", replica)
            if fate[0] == "stall_after" and step == fate[1]:
                await asyncio.sleep(10)
            if fate[0] == "error":
                raise ValueError("engine bug")
            if fate[0] == "slow":
                if step == fate[2]:
                    raise ReplicaEngineDeadError("engine died", replica)
                await asyncio.sleep(fate[1])
            token = _continuation(context)
            context.append(token)
            last = step == request.sampling.max_tokens - 1
            yield OutputChunk(request.request_id, [token], _detok([token]), "length" if last else None,
                              num_prompt_tokens=len(request.prompt_token_ids),
                              num_cached_prompt_tokens=len(request.prompt_token_ids) // 2,
                              replica_id=replica if step == 0 else None)


def _run(script: list[tuple], max_tokens: int = 12, policy: FailoverConfig = POLICY, left_behind=None):
    replicas = ScriptedReplicas(script)
    events = FailoverEvents()
    excluded: list[str] = []
    request = GenerationRequest("req", PROMPT, SamplingSpec(max_tokens=max_tokens, temperature=0))

    async def collect() -> list[OutputChunk]:
        return [c async for c in resumable_generation(request, replicas.start, policy, excluded.append, events,
                                                      _detok, left_behind=left_behind)]

    return asyncio.run(collect()), replicas, events, excluded


def _tokens(chunks: list[OutputChunk]) -> list[int]:
    return [t for c in chunks for t in c.token_ids]


UNDISTURBED = _tokens(_run([("ok",)])[0])


def test_undisturbed_run_is_one_attempt() -> None:
    chunks, replicas, events, excluded = _run([("ok",)])
    assert len(replicas.requests) == 1 and not events.happened and excluded == []
    assert len(UNDISTURBED) == 12 and chunks[-1].finish_reason == "length"


def test_failure_before_first_token_is_retried_invisibly() -> None:
    chunks, replicas, events, excluded = _run([("die_after", 0), ("ok",)])
    assert _tokens(chunks) == UNDISTURBED
    assert (events.retried, events.resumed) == (1, 0)
    assert excluded == ["replica-0"]  # named by the error itself: no token carried the replica id
    assert replicas.requests[1].prompt_token_ids == PROMPT


def test_mid_stream_death_resumes_with_the_tokens_sent_and_the_rest_of_max_tokens() -> None:
    chunks, replicas, events, excluded = _run([("die_after", 5), ("ok",)])
    assert _tokens(chunks) == UNDISTURBED  # nothing duplicated, nothing missing
    assert "".join(c.text for c in chunks) == _detok(UNDISTURBED)
    resumed = replicas.requests[1]
    assert resumed.prompt_token_ids == PROMPT + UNDISTURBED[:5]
    assert resumed.sampling.max_tokens == 7
    assert resumed.request_id != replicas.requests[0].request_id
    assert (events.retried, events.resumed, excluded) == (0, 1, ["replica-0"])
    # Usage keeps describing the request as sent, not the longer resumed prompt.
    assert {c.num_prompt_tokens for c in chunks} == {4} and {c.num_cached_prompt_tokens for c in chunks} == {2}


def test_two_failures_in_a_row_still_complete() -> None:
    chunks, _, events, excluded = _run([("die_after", 3), ("die_after", 2), ("ok",)])
    assert _tokens(chunks) == UNDISTURBED
    assert events.resumed == 2 and excluded == ["replica-0", "replica-1"]


def test_a_stalled_stream_is_cancelled_and_resumed() -> None:
    chunks, _, events, excluded = _run([("stall_after", 4), ("ok",)])
    assert _tokens(chunks) == UNDISTURBED
    assert events.resumed == 1 and excluded == ["replica-0"]


def test_a_request_queued_on_a_replica_excluded_meanwhile_moves_before_its_first_token() -> None:
    # The first attempt's replica never answers (a wedged engine's queue); another stream there stalls and
    # the replica is excluded 0.3 s in. The request moves then, not after the 30 s first-token timeout.
    policy = POLICY.model_copy(update={"first_token_timeout_s": 30.0})
    started = time.monotonic()
    asked: list[str] = []

    def left_behind(request_id: str) -> str | None:
        asked.append(request_id)
        return "replica-0" if request_id == "req" and time.monotonic() - started > 0.3 else None

    chunks, replicas, events, excluded = _run([("stall_after", 0), ("ok",)], policy=policy,
                                              left_behind=left_behind)
    assert time.monotonic() - started < 5
    assert _tokens(chunks) == UNDISTURBED
    assert events.retried == 1 and events.resumed == 0 and excluded == ["replica-0"]
    assert [r.request_id for r in replicas.requests] == ["req", "req-a1"] and set(asked) == {"req"}


def test_a_request_whose_replica_stays_included_waits_for_the_first_token_timeout() -> None:
    policy = POLICY.model_copy(update={"first_token_timeout_s": 0.6})
    started = time.monotonic()
    chunks, _, events, excluded = _run([("stall_after", 0), ("ok",)], policy=policy, left_behind=lambda _: None)
    assert 0.6 <= time.monotonic() - started < 5
    assert _tokens(chunks) == UNDISTURBED and events.retried == 1 and excluded == []


def test_attempts_are_bounded() -> None:
    with pytest.raises(ReplicaEngineDeadError):
        _run([("die_after", 1)] * 10, policy=POLICY.model_copy(update={"max_attempts": 3}))


def test_a_request_error_is_not_retried() -> None:
    replicas = ScriptedReplicas([("error",), ("ok",)])
    request = GenerationRequest("req", PROMPT, SamplingSpec(max_tokens=4, temperature=0))
    excluded: list[str] = []

    async def collect() -> list[OutputChunk]:
        return [c async for c in resumable_generation(request, replicas.start, POLICY, excluded.append,
                                                      FailoverEvents(), _detok)]

    with pytest.raises(ValueError):
        asyncio.run(collect())
    assert len(replicas.requests) == 1 and excluded == []  # a bad request is not the replica's fault


def test_disabled_failover_surfaces_the_first_failure() -> None:
    with pytest.raises(ReplicaEngineDeadError):
        _run([("die_after", 2), ("ok",)], policy=POLICY.model_copy(update={"enabled": False}))


def test_death_after_the_last_token_finishes_without_a_new_attempt() -> None:
    chunks, replicas, _, _ = _run([("die_after", 12)], max_tokens=12)
    # All 12 tokens arrived; the finish chunk was lost with the replica: the ingress finishes it.
    assert _tokens(chunks) == UNDISTURBED and chunks[-1].finish_reason == "length"
    assert len(replicas.requests) == 1


def test_held_back_text_is_sent_before_the_next_replicas_tokens() -> None:
    class HoldsBackText(ScriptedReplicas):
        async def start(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
            async for chunk in super().start(request):
                if len(self.requests) == 1:
                    chunk.text = ""  # the first replica holds all its text back (a stop-string prefix)
                yield chunk

    replicas = HoldsBackText([("die_after", 3), ("ok",)])
    request = GenerationRequest("req", PROMPT, SamplingSpec(max_tokens=6, temperature=0))

    async def collect() -> list[OutputChunk]:
        return [c async for c in resumable_generation(request, replicas.start, POLICY, lambda _: None,
                                                      FailoverEvents(), _detok)]

    chunks = asyncio.run(collect())
    assert "".join(c.text for c in chunks) == _detok(_tokens(chunks))


def test_each_retry_and_resume_is_told_to_the_listener_with_its_details() -> None:
    replicas = ScriptedReplicas([("die_after", 0), ("die_after", 5), ("ok",)])
    heard: list[tuple[str, dict]] = []
    events = FailoverEvents(listener=lambda kind, details: heard.append((kind, details)))
    request = GenerationRequest("req", PROMPT, SamplingSpec(max_tokens=12, temperature=0))

    async def collect() -> list[OutputChunk]:
        return [c async for c in resumable_generation(request, replicas.start, POLICY, lambda _: None, events,
                                                      _detok)]

    assert _tokens(asyncio.run(collect())) == UNDISTURBED
    assert [kind for kind, _ in heard] == ["retried", "resumed"] and (events.retried, events.resumed) == (1, 1)
    assert heard[1][1] == {"failed_replica": "replica-1", "error": "ReplicaEngineDeadError", "attempt": 2,
                           "tokens_sent": 5}


WINDOW = FailoverConfig(retry_backoff_s=0, stall_timeout_s=0.5, first_token_timeout_s=0.5, retry_window_s=0.3)


def test_a_resumed_stream_keeps_flowing_past_the_retry_window() -> None:
    # Resumed after 3 tokens, the second attempt streams for ~0.8 s: well past the 0.3 s window, which
    # bounds the wait for its first token, not how long it may flow.
    chunks, replicas, events, excluded = _run([("die_after", 3), ("slow", 0.02, None)], max_tokens=40,
                                              policy=WINDOW)
    assert _tokens(chunks) == _tokens(_run([("ok",)], max_tokens=40)[0])
    assert len(replicas.requests) == 2 and events.resumed == 1 and excluded == ["replica-0"]


def test_a_later_failure_of_a_flowing_resumed_stream_gets_a_window_of_its_own() -> None:
    # Second failure ~0.5 s after the first, past the first window: the stream had flowed again meanwhile,
    # so it moves a second time instead of giving up.
    chunks, replicas, events, _ = _run([("die_after", 3), ("slow", 0.02, 25), ("ok",)], max_tokens=40,
                                       policy=WINDOW)
    assert _tokens(chunks) == _tokens(_run([("ok",)], max_tokens=40)[0])
    assert len(replicas.requests) == 3 and events.resumed == 2


def _sentencepiece_like(ids: list[int]) -> str:
    """Decodes as SentencePiece does: each token is a word with a leading space, dropped at the start."""
    return "".join(f" w{i}" for i in ids).removeprefix(" ")


def test_held_back_text_keeps_its_leading_space_with_a_sentencepiece_tokenizer() -> None:
    class WordReplicas(ScriptedReplicas):
        async def start(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
            first_attempt = not self.requests
            async for chunk in super().start(request):
                # In the engine every word follows the prompt, so it keeps its space; the first replica
                # holds all its text back (a possible stop-string start) and then dies.
                chunk.text = "" if first_attempt else "".join(f" w{i}" for i in chunk.token_ids)
                yield chunk

    replicas = WordReplicas([("die_after", 3), ("ok",)])
    request = GenerationRequest("req", PROMPT, SamplingSpec(max_tokens=6, temperature=0))

    async def collect() -> list[OutputChunk]:
        return [c async for c in resumable_generation(request, replicas.start, POLICY, lambda _: None,
                                                      FailoverEvents(), _sentencepiece_like)]

    chunks = asyncio.run(collect())
    assert "".join(c.text for c in chunks) == "".join(f" w{i}" for i in _tokens(chunks))
