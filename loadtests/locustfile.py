"""Locust users for an OpenAI-compatible LLM endpoint (HTTP only), with TTFT/ITL/TPOT/E2E as Locust metrics.

    locust -f loadtests/locustfile.py --host http://127.0.0.1:8000 --headless \\
        --ws-scenario mixed [--ws-records DIR] [--ws-tokenizer NAME|DIR]

(`warmserve loadtest` runs this for you and writes the report.) The scenario (`loadtests.scenarios`: a built-in
name or a YAML/JSON file) picks the user kinds and weights, the load shape (which bounds users, time and
requests: Locust's own -u/-t are ignored) and the workload sizes.

What Locust shows, one row per (type, name), name = the user kind:
- `POST <kind>`: each request; response time = end to end (the whole stream), "size" = output tokens;
  a failure's message carries the HTTP status and the error body.
- `TTFT`, `ITL` (one sample per gap between text events), `TPOT`, `E2E` (successful streams only), and
  `TOKENS/S` (output tokens per second of one request: the value is tokens/s, not milliseconds).
- The `vision` kind (KServe v2 infer, one image, not streamed) reports `TTFT` and `E2E` only, both its
  response time: the whole answer is its first result.

Each Locust process keeps its own state (a locustfile is loaded once per process); with `--ws-records` it
appends one JSON line per counted request there (`loadtests.records`), the input of the report.
"""

from __future__ import annotations

import codecs
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gevent
import requests
from locust import HttpUser, LoadTestShape, constant, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from loadtests.kserve_body import image_size_of, infer_body
from loadtests.records import RecordWriter, RequestRecord
from loadtests.scenarios import Scenario, load_scenario
from loadtests.sse_timing import StreamTiming, extract_timing, split_sse_lines
from loadtests.text_source import TextSource, make_counter, resolve_tokenizer
from loadtests.workloads import VISION_KIND, Conversation, PreparedRequest, WorkloadFactory

REQUEST_TYPE = "POST"
METRIC_TYPES = ("TTFT", "ITL", "TPOT", "E2E", "TOKENS/S")
# Read timeout between bytes of one stream; a long prefill on a loaded CPU can take tens of seconds.
READ_TIMEOUT_S = 600.0
# Distinct prompts per worker: user indexes of worker w start at w * this.
_USERS_PER_WORKER = 1_000_000


@events.init_command_line_parser.add_listener
def _add_arguments(parser: Any) -> None:
    parser.add_argument("--ws-scenario", default="mixed", help="built-in scenario name or YAML/JSON file")
    parser.add_argument("--ws-records", default="", help="directory for per-request JSON lines (report input)")
    parser.add_argument("--ws-tokenizer", default=None,
                        help="tokenizer to size prompts: model dir, tokenizer.json or model-store name "
                             "(default: the scenario's model in ~/.cache/warmserve/models, else word counts)")


@dataclass(slots=True)
class _ProcessContext:
    scenario: Scenario
    factory: WorkloadFactory
    writer: RecordWriter | None
    user_ids: itertools.count  # type: ignore[type-arg]


_context: _ProcessContext | None = None


def _scenario(environment: Environment) -> Scenario:
    return load_scenario(environment.parsed_options.ws_scenario)


def _process_context(environment: Environment) -> _ProcessContext:
    # Built on the first user's start: the master of a distributed run never needs the text source.
    global _context
    if _context is None:
        options = environment.parsed_options
        scenario = _scenario(environment)
        tokenizer = resolve_tokenizer(options.ws_tokenizer, scenario.workload.model)
        factory = WorkloadFactory(scenario.workload, TextSource(make_counter(tokenizer)))
        writer = RecordWriter(Path(options.ws_records)) if options.ws_records else None
        first_id = getattr(environment.runner, "worker_index", 0) * _USERS_PER_WORKER
        _context = _ProcessContext(scenario, factory, writer, itertools.count(first_id))
    return _context


@events.init.add_listener
def _apply_weights(environment: Environment, **_: Any) -> None:
    if environment.parsed_options is None:
        return
    weights = _scenario(environment).users
    for user_class in environment.user_classes:
        kind = getattr(user_class, "kind", None)
        if kind in weights:
            user_class.weight = weights[kind]
    # Only the scenario's kinds run, whatever classes the command line named.
    environment.user_classes = [c for c in environment.user_classes if getattr(c, "kind", None) in weights]


@events.test_stop.add_listener
def _settle_csv(environment: Environment, **_: Any) -> None:
    # Locust rewrites its CSV once per CSV_STATS_INTERVAL_SEC and not again at exit, so requests finishing in
    # the last second would be missing from `_stats.csv`. Users are stopped here (and on a master the workers'
    # last stats are in): wait one interval so the CSV holds the final counts.
    if not isinstance(environment.runner, WorkerRunner):
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.5)


@events.quitting.add_listener
def _close_records(**_: Any) -> None:
    if _context is not None and _context.writer is not None:
        _context.writer.close()


def completed_requests(environment: Environment) -> int:
    """Requests finished so far (the POST rows), the same count on a master as the sum over workers."""
    return sum(entry.num_requests for (_, method), entry in environment.stats.entries.items()
               if method == REQUEST_TYPE)


class ScenarioShape(LoadTestShape):
    """The scenario's load shape (loadtests.shapes), bounded in users, time and completed requests."""

    def tick(self) -> tuple[int, float] | None:
        assert self.runner is not None  # Locust sets it before the first tick
        environment = self.runner.environment
        return _scenario(environment).shape.tick(self.get_run_time(), completed_requests(environment))


class _LLMUser(HttpUser):
    abstract = True
    kind: ClassVar[str] = ""
    wait_time = constant(0)  # closed loop: each user sends its next request when the previous one ends

    def on_start(self) -> None:
        self.ctx = _process_context(self.environment)
        self.user_index = next(self.ctx.user_ids)
        self.request_index = 0

    def next_index(self) -> int:
        self.request_index += 1
        return self.request_index - 1

    def send(self, prepared: PreparedRequest) -> StreamTiming:
        """POST one streaming request, read the whole stream, report it to Locust and the records."""
        start_unix_s = time.time()
        start_s = time.perf_counter()
        with self.client.post(prepared.path, json=prepared.body, name=self.kind, stream=True,
                              catch_response=True, timeout=(10.0, READ_TIMEOUT_S)) as response:
            status = int(response.status_code or 0)
            if status == 200:
                timing = _read_stream(response, start_s)
            else:
                timing = StreamTiming(ok=False, e2e_s=time.perf_counter() - start_s,
                                      error=_http_error(response, status))
            if timing.ok:
                response.success()
            else:
                response.failure(timing.error if status != 200 else f"HTTP 200: {timing.error}")
            response.request_meta["response_time"] = timing.e2e_s * 1000.0
            response.request_meta["response_length"] = timing.output_tokens
        self._report(timing, status, start_unix_s)
        return timing

    def _report(self, timing: StreamTiming, status: int, start_unix_s: float) -> None:
        tpot_ms = timing.tpot_s * 1000.0 if timing.tpot_s is not None else None
        ttft_ms = timing.ttft_s * 1000.0 if timing.ttft_s is not None else None
        itls_ms = [gap * 1000.0 for gap in timing.itls_s]
        if timing.ok:
            fire = self.environment.events.request.fire
            metrics: list[tuple[str, float]] = [("TTFT", ttft_ms or 0.0), ("E2E", timing.e2e_s * 1000.0),
                                                ("TOKENS/S", timing.output_tokens_per_s)]
            metrics += [("ITL", gap) for gap in itls_ms]
            if tpot_ms is not None:
                metrics.append(("TPOT", tpot_ms))
            for metric, value in metrics:
                fire(request_type=metric, name=self.kind, response_time=value, response_length=0,
                     exception=None, context={})
        if self.ctx.writer is not None:
            self.ctx.writer.write(RequestRecord(
                start_unix_s=start_unix_s, name=self.kind, kind=self.kind, ok=timing.ok, status=status,
                e2e_ms=timing.e2e_s * 1000.0, ttft_ms=ttft_ms if timing.ok else None,
                tpot_ms=tpot_ms if timing.ok else None, itls_ms=itls_ms if timing.ok else [],
                output_tokens=timing.output_tokens, prompt_tokens=timing.prompt_tokens,
                cached_tokens=timing.cached_tokens, error=timing.error[:1000]))


def _read_stream(response: requests.Response, start_s: float) -> StreamTiming:
    lines: list[tuple[float, str]] = []
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a chunk may split a character
    buffer = ""
    try:
        for chunk in response.iter_content(chunk_size=None):
            arrived_s = time.perf_counter()
            complete, buffer = split_sse_lines(buffer + decoder.decode(chunk))
            lines.extend((arrived_s, line) for line in complete)
    except (requests.RequestException, OSError) as error:
        return StreamTiming(ok=False, e2e_s=time.perf_counter() - start_s,
                            error=f"stream broken after {len(lines)} lines: {error!r}"[:1000])
    end_s = time.perf_counter()
    if buffer:
        lines.append((end_s, buffer))
    return extract_timing(start_s, lines, end_s)


def _http_error(response: requests.Response, status: int) -> str:
    if status == 0:
        return f"no response: {getattr(response, 'error', None)!r}"[:1000]
    try:
        body = response.text
    except (requests.RequestException, OSError) as error:
        body = f"(body unreadable: {error!r})"
    return f"HTTP {status}: {body.strip()[:800]}"


class SharedPrefixUser(_LLMUser):
    kind = "shared_prefix"

    @task
    def chat(self) -> None:
        self.send(self.ctx.factory.shared_prefix(self.user_index, self.next_index()))


class MultiTurnUser(_LLMUser):
    kind = "multi_turn"
    conversation: Conversation | None = None

    @task
    def turn(self) -> None:
        if self.conversation is None or self.conversation.done:
            self.conversation = self.ctx.factory.conversation(self.user_index, self.next_index())
        timing = self.send(self.conversation.next_request())
        if timing.ok:
            self.conversation.answer(timing.text)
        else:
            self.conversation.drop_unanswered()


class LongContextUser(_LLMUser):
    kind = "long_context"

    @task
    def document(self) -> None:
        self.send(self.ctx.factory.long_context(self.user_index, self.next_index()))


class CompletionsUser(_LLMUser):
    kind = "completions"

    @task
    def complete(self) -> None:
        self.send(self.ctx.factory.completion(self.user_index, self.next_index()))


class VisionUser(HttpUser):
    """One-image KServe v2 infer requests, back to back, to the scenario's vision model."""

    kind = VISION_KIND
    wait_time = constant(0)

    def on_start(self) -> None:
        self.ctx = _process_context(self.environment)
        user_index = next(self.ctx.user_ids)
        model = self.ctx.scenario.workload.vision_model
        self.path = f"/v2/models/{model}/infer"
        # The image size from the model's own metadata; fetched outside Locust's stats (it is set-up).
        metadata = requests.get(f"{self.host}/v2/models/{model}", timeout=30)
        metadata.raise_for_status()
        self.body, self.headers = infer_body(image_size_of(metadata.json()), self.ctx.scenario.workload.seed
                                             + user_index)

    @task
    def infer(self) -> None:
        start_unix_s = time.time()
        start_s = time.perf_counter()
        with self.client.post(self.path, data=self.body, headers=self.headers, name=self.kind,
                              catch_response=True, timeout=(10.0, READ_TIMEOUT_S)) as response:
            status = int(response.status_code or 0)
            error = "" if status == 200 else _http_error(response, status)
            if not error:
                outputs = _infer_outputs(response)
                if not outputs:
                    error = f"HTTP 200 without outputs: {response.content[:300]!r}"
            e2e_ms = (time.perf_counter() - start_s) * 1000.0
            if error:
                response.failure(error)
            else:
                response.success()
            response.request_meta["response_time"] = e2e_ms
        if not error:
            for metric in ("TTFT", "E2E"):
                self.environment.events.request.fire(request_type=metric, name=self.kind, response_time=e2e_ms,
                                                     response_length=0, exception=None, context={})
        if self.ctx.writer is not None:
            self.ctx.writer.write(RequestRecord(
                start_unix_s=start_unix_s, name=self.kind, kind=self.kind, ok=not error, status=status,
                e2e_ms=e2e_ms, ttft_ms=None if error else e2e_ms, error=error[:1000]))


def _infer_outputs(response: requests.Response) -> list[object] | None:
    """The `outputs` of a KServe v2 infer response; with binary outputs the JSON header comes first, its
    length in `Inference-Header-Content-Length`."""
    raw = response.content
    header_length = response.headers.get("Inference-Header-Content-Length")
    try:
        header = json.loads(raw[:int(header_length)] if header_length else raw)
    except ValueError:
        return None
    outputs = header.get("outputs") if isinstance(header, dict) else None
    return outputs if isinstance(outputs, list) else None
