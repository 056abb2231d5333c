"""One engine request that survives replica failures: retried before its first token, resumed after it.

When the replica serving a stream fails (its actor died, its engine died, the stream stalled), the
request continues on another replica as the prompt plus every token already produced, with the rest of
`max_tokens`. With greedy decoding the continuation is the one the first replica would have produced, so
the caller sees one uninterrupted stream with no token duplicated or missing. What cannot hold is in
docs/reliability.md (sampled decoding continues differently; a stop string split exactly across the
failover point is not seen).

Pure asyncio: attempts are started through an injected function (a Serve handle call in the ingress), so
the unit tests drive every failure mode with fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace

from configs.reliability_schema import FailoverConfig
from deployments.replica_failures import StreamStalledError, failed_replica_id, is_replica_failure
from engines.types import GenerationRequest, OutputChunk

logger = logging.getLogger("warmserve.failover")

StartAttempt = Callable[[GenerationRequest], AsyncIterator[OutputChunk]]
Detokenize = Callable[[list[int]], str]
OnReplicaFailed = Callable[[str], None]
# The replica an engine request (by id) was sent to, when that replica has been excluded since.
LeftBehind = Callable[[str], "str | None"]
# How often a request waiting for its first token checks whether its replica was excluded meanwhile.
LEFT_BEHIND_POLL_S = 0.25


@dataclass(slots=True)
class FailoverEvents:
    """What failover did for one API request (all its choices); reported to the client."""

    retried: int = 0  # attempts restarted before any token of theirs was sent
    resumed: int = 0  # attempts resumed mid-stream with the tokens already sent
    failed_replicas: list[str] = field(default_factory=list)
    # Told each retry or resume as it happens, with its details (the ingress adds them to its trace).
    listener: Callable[[str, dict[str, str | int]], None] | None = None

    def record(self, kind: str, **details: str | int) -> None:
        if kind == "resumed":
            self.resumed += 1
        else:
            self.retried += 1
        if self.listener is not None:
            self.listener(kind, details)

    @property
    def happened(self) -> bool:
        return bool(self.retried or self.resumed)

    def as_dict(self) -> dict[str, object]:
        return {"retried": self.retried, "resumed": self.resumed, "failed_replicas": list(self.failed_replicas)}


@dataclass(slots=True)
class _Progress:
    """What the caller has been given so far, across attempts."""

    token_ids: list[int] = field(default_factory=list)
    text_parts: list[str] = field(default_factory=list)
    # Usage fields of the request as first sent: a resumed attempt's prompt is longer and partly cached.
    num_prompt_tokens: int | None = None
    num_cached_prompt_tokens: int | None = None


def resumed_request(original: GenerationRequest, produced: list[int], attempt: int) -> GenerationRequest:
    """The request that continues `original` after `produced` tokens, under its own engine request id."""
    sampling = replace(original.sampling, max_tokens=original.sampling.max_tokens - len(produced))
    return GenerationRequest(request_id=f"{original.request_id}-a{attempt}",
                             prompt_token_ids=original.prompt_token_ids + produced, sampling=sampling)


# Prompt tokens decoded before the produced ones, so these decode as they do inside the prompt's text.
CATCH_UP_CONTEXT_TOKENS = 8


def _catch_up_text(progress: _Progress, detokenize: Detokenize | None, prompt_ids: list[int]) -> str:
    """Text of produced tokens the failed replica held back (a possible stop-string start, a partial
    character): the next replica only detokenizes its own tokens, so the ingress sends it first.

    Decoded after the prompt's last tokens, as the engine decodes them: decoded alone, a SentencePiece
    tokenizer drops the space that starts the first word, and the text would no longer match."""
    if detokenize is None or not progress.token_ids:
        return ""
    sent = "".join(progress.text_parts)
    context = prompt_ids[-CATCH_UP_CONTEXT_TOKENS:]
    before = detokenize(context) if context else ""
    full = detokenize(context + progress.token_ids)
    if not full.startswith(before):  # the context merged with the first produced token: decode alone
        before, full = "", detokenize(progress.token_ids)
    full = full[len(before):]
    if len(full) <= len(sent) or not full.startswith(sent) or full.endswith("\ufffd"):
        return ""
    return full[len(sent):]


async def resumable_generation(request: GenerationRequest, start_attempt: StartAttempt, policy: FailoverConfig,
                               on_replica_failed: OnReplicaFailed, events: FailoverEvents,
                               detokenize: Detokenize | None = None,
                               clock: Callable[[], float] = time.monotonic,
                               left_behind: LeftBehind | None = None) -> AsyncIterator[OutputChunk]:
    """Stream `request`'s chunks, moving to another replica on a replica failure (bounded by `policy`).

    An attempt still waiting for its first token also moves when `left_behind` says its replica was
    excluded meanwhile (another stream there stalled or broke): a wedged engine's queue would hold it for
    the whole first-token timeout. Non-replica errors (a bad request, an engine bug) and the last failure
    once attempts or the retry window are spent propagate unchanged; the ingress turns them into an error
    status or event. The retry window bounds the time from a failure to the next attempt's first token,
    never a stream that flows again: a resumed generation may run as long as an undisturbed one, and a
    later failure of it opens a window of its own (`max_attempts` still bounds the attempts in all).
    """
    progress = _Progress()
    attempt = 0
    first_failure_at: float | None = None
    catch_up = ""
    while True:
        attempt_request = resumed_request(request, progress.token_ids, attempt) if progress.token_ids else (
            request if attempt == 0 else replace(request, request_id=f"{request.request_id}-a{attempt}"))
        stream = start_attempt(attempt_request)
        replica: str | None = None
        attempt_started = False
        try:
            while True:
                # Before an attempt's first token it may wait in a queue (a resumed attempt too: it is a new
                # request on another replica); after one, silence means a wedge.
                timeout = policy.stall_timeout_s if attempt_started else policy.first_token_timeout_s
                if first_failure_at is not None and not attempt_started:
                    # After a failure, no wait for a first token outlasts the retry window; a stream that
                    # flows again is bounded by the stall timeout alone, however long it runs.
                    timeout = max(0.0, min(timeout, first_failure_at + policy.retry_window_s - clock()))
                if attempt_started or left_behind is None:
                    try:
                        async with asyncio.timeout(timeout):
                            chunk = await anext(stream, None)
                    except TimeoutError:
                        raise StreamStalledError(f"no output from replica {replica or '?'} for {timeout:.0f} s",
                                                 replica) from None
                else:
                    chunk = await _first_chunk(stream, timeout, attempt_request.request_id, left_behind, clock)
                if chunk is None:  # ended without a finish reason (should not happen): end here too
                    return
                replica = chunk.replica_id or replica
                attempt_started = True
                first_failure_at = None  # flowing again: a later failure opens a new retry window
                _restore_prompt_usage(chunk, progress)
                if catch_up:
                    chunk.text, catch_up = catch_up + chunk.text, ""
                progress.token_ids.extend(chunk.token_ids)
                progress.text_parts.append(chunk.text)
                yield chunk
                if chunk.finish_reason is not None:
                    return
        except Exception as error:
            if not policy.enabled or not is_replica_failure(error):
                raise
            failed = failed_replica_id(error) or replica
            if failed is not None:
                on_replica_failed(failed)
                events.failed_replicas.append(failed)
            now = clock()
            first_failure_at = now if first_failure_at is None else first_failure_at
            attempt += 1
            if attempt >= policy.max_attempts or now - first_failure_at > policy.retry_window_s:
                logger.warning("request %s: giving up after %d attempts: %s", request.request_id, attempt,
                               error)
                raise
            remaining = request.sampling.max_tokens - len(progress.token_ids)
            logger.warning("request %s: replica %s failed after %d tokens (%s: %s); %s on another replica",
                           request.request_id, failed or "?", len(progress.token_ids), type(error).__name__,
                           error, "resuming" if progress.token_ids else "retrying")
            if remaining <= 0:  # every token arrived, only the finish was lost
                yield _finish_chunk(request, progress)
                return
            details = {"failed_replica": failed or "?", "error": type(error).__name__, "attempt": attempt,
                       "tokens_sent": len(progress.token_ids)}
            if progress.token_ids:
                events.record("resumed", **details)
                catch_up = _catch_up_text(progress, detokenize, request.prompt_token_ids)
            else:
                events.record("retried", **details)
            await asyncio.sleep(policy.retry_backoff_s)
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()


async def _first_chunk(stream: AsyncIterator[OutputChunk], timeout: float, request_id: str,
                       left_behind: LeftBehind, clock: Callable[[], float]) -> OutputChunk | None:
    """The attempt's first chunk within `timeout`, given up early once its replica is excluded."""
    deadline = clock() + timeout
    pending = asyncio.ensure_future(anext(stream, None))
    try:
        while True:
            left = deadline - clock()
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, min(LEFT_BEHIND_POLL_S, left)))
            if done:
                return pending.result()
            if (replica := left_behind(request_id)) is not None:
                raise StreamStalledError(f"replica {replica} was excluded while this request waited for its "
                                         "first token there", replica)
            if left <= LEFT_BEHIND_POLL_S:
                raise StreamStalledError(f"no output from replica ? for {timeout:.0f} s", None)
    finally:
        if not pending.done():  # stop the attempt's generator (it cancels its replica call)
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)


def _restore_prompt_usage(chunk: OutputChunk, progress: _Progress) -> None:
    if progress.num_prompt_tokens is None:
        progress.num_prompt_tokens = chunk.num_prompt_tokens
        progress.num_cached_prompt_tokens = chunk.num_cached_prompt_tokens
    else:
        chunk.num_prompt_tokens = progress.num_prompt_tokens
        chunk.num_cached_prompt_tokens = progress.num_cached_prompt_tokens


def _finish_chunk(request: GenerationRequest, progress: _Progress) -> OutputChunk:
    return OutputChunk(request_id=request.request_id, token_ids=[], text="", finish_reason="length",
                       num_prompt_tokens=progress.num_prompt_tokens or len(request.prompt_token_ids),
                       num_cached_prompt_tokens=progress.num_cached_prompt_tokens)
