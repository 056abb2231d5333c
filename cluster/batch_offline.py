"""Offline mode: Ray Data drives engine replicas directly, no Serve app in between.

The driver plans shards (prefix-sorted requests, `cluster.batch_plan`), and hands them to Ray Data as a
dataset of one shard per block. `map_batches` with `EngineWorker`, a callable class on an actor pool of
`replicas` actors, runs each shard on one actor: the actor owns one `VLLMEngine` (the same adapter, model
checkpoint and TP x PP shape as the Serve replicas) and submits every request of the shard at once, so
vLLM's scheduler batches them; `shards_in_flight` shards per actor overlap, so the engine never drains
between shards. Results stream back to the driver, which commits each shard (`cluster.batch_store`).

Ray Data restarts an actor that dies (a SIGKILLed worker) and retries its shards on the new one; a shard
is committed only when its result reaches the driver, so nothing is lost or doubled. An engine that dies
inside a live actor would fail the shard as an application error, which Ray Data does not retry: so the
actor ends its engine's processes and exits, and the engine crash becomes an actor death like any other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cluster.batch_requests import EngineResult, PreparedRequest
from configs.schema import LLMModelConfig
from engines.engine_processes import EngineProcesses
from engines.placement import executor_backend, replica_resources

logger = logging.getLogger("warmserve.batch")
# The exit status of an engine actor whose engine died: Ray Data sees the actor die and retries its shards.
ENGINE_DEAD_EXIT_STATUS = 75


class OfflineConfigError(ValueError):
    """The model's shape cannot run as a Ray Data actor (names the reason and the alternative)."""


def actor_resources(model: LLMModelConfig) -> dict[str, float]:
    """Ray resources one engine actor reserves: the replica's own and its engine workers' (the same
    totals a Serve replica of this model reserves), so TP x PP comes from the same config."""
    if model.engine.kind == "vllm" and executor_backend(model.engine, model.placement) == "ray":
        raise OfflineConfigError(
            f"model {model.name!r}: a replica of {model.engine.tensor_parallel_size} x "
            f"{model.engine.pipeline_parallel_size} spans nodes (vLLM's Ray executor needs the replica's own "
            "placement group, which a Ray Data actor pool does not give); run it with --mode online "
            "against the deployed app")
    total = replica_resources(model).total
    return {"num_cpus": total.get("CPU", 0.0), "num_gpus": total.get("GPU", 0.0)}


class EngineWorker:
    """Ray Data callable class: one instance (one actor) per engine replica.

    Async, so Ray Data runs it on the actor's event loop and several shards (`max_concurrent_calls_per_actor`)
    share the one engine concurrently. The engine starts on the first call, inside that loop, as it does in
    a Serve replica (vLLM's AsyncLLM binds to the loop it first runs on).
    """

    def __init__(self, model: LLMModelConfig, model_path: str) -> None:
        self._model = model
        self._model_path = Path(model_path)
        self._engine: Any = None
        self._starting: asyncio.Task[None] | None = None
        self._ready_at: float | None = None
        self._processes = EngineProcesses()

    async def _ensure_engine(self) -> None:
        if self._starting is None:
            self._starting = asyncio.ensure_future(self._start())
        await asyncio.shield(self._starting)

    async def _start(self) -> None:
        # No KV event publishing: nothing routes between these engines; Ray Data hands out shards.
        engine: Any
        if self._model.engine.kind == "fake":  # the deterministic test engine (integration tests)
            from engines.fake_engine import FakeLLMEngine
            from engines.tokenizer import PromptTokenizer

            engine = FakeLLMEngine(self._model.engine, detokenize=PromptTokenizer(self._model_path).decode)
        else:
            from engines.vllm_engine import VLLMEngine

            engine = VLLMEngine(self._model_path, self._model.engine, self._model.placement, kv_events=None)
            self._processes.start_guard()  # its processes never outlive this actor (engines/engine_guard.py)
        await engine.start()
        self._engine = engine
        self._ready_at = time.time()

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        await self._ensure_engine()
        results = []
        for payload in batch["payload"]:
            started_at = time.time()
            requests = [PreparedRequest.from_dict(r) for r in json.loads(payload)]
            outcomes = await asyncio.gather(*(self._run(r) for r in requests))
            results.append(json.dumps({
                "results": [_result_dict(o) for o in outcomes],
                "started_at": started_at, "finished_at": time.time(), "engine_ready_at": self._ready_at,
            }))
        return {"result": results}

    async def _run(self, prepared: PreparedRequest) -> EngineResult:
        choices = prepared.generation_requests()
        outcomes = await asyncio.gather(*(self._run_choice(c) for c in choices), return_exceptions=True)
        failure = next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            from engines.protocol import EngineDeadError

            if isinstance(failure, EngineDeadError):
                self._exit_for_a_new_actor(failure)
            return EngineResult(prepared.custom_id, [], [], len(prepared.prompt_token_ids), 0, 0,
                                error=type(failure).__name__)
        texts = [o[0] for o in outcomes]  # type: ignore[index]
        finishes = [o[1] for o in outcomes]  # type: ignore[index]
        completion = sum(o[2] for o in outcomes)  # type: ignore[index]
        cached = outcomes[0][3]  # type: ignore[index]  # a property of the prompt: from the first choice
        return EngineResult(prepared.custom_id, texts, finishes, len(prepared.prompt_token_ids), completion, cached)

    def _exit_for_a_new_actor(self, failure: BaseException) -> None:
        """The engine is dead, so this actor is useless: end what is left of the engine and exit the
        process, which Ray Data handles as an actor failure (a new actor, the shards retried there)."""
        logger.error("engine died (%s); ending this actor so Ray Data retries its shards on a new one", failure)
        self._processes.end_all()
        os._exit(ENGINE_DEAD_EXIT_STATUS)

    async def _run_choice(self, request: Any) -> tuple[str, str | None, int, int]:
        text, finish, tokens, cached = "", None, 0, 0
        async for chunk in self._engine.generate(request):
            text += chunk.text
            tokens += len(chunk.token_ids)
            finish = chunk.finish_reason or finish
            if chunk.num_cached_prompt_tokens is not None:
                cached = chunk.num_cached_prompt_tokens
        return text, finish, tokens, cached


def _result_dict(result: EngineResult) -> dict[str, Any]:
    return {"custom_id": result.custom_id, "texts": result.texts, "finish_reasons": result.finish_reasons,
            "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
            "cached_tokens": result.cached_tokens, "error": result.error}


def run_offline(shards: list[list[PreparedRequest]], model: LLMModelConfig, model_path: Path, replicas: int,
                shards_in_flight: int) -> Iterator[dict[str, Any]]:
    """Yield one result per shard as it finishes (any order): `results` (EngineResult dicts), timing.

    Called from the job's driver, connected to Ray. Raises `OfflineConfigError` before starting anything
    when the model cannot run this way.
    """
    import ray.data
    from ray.data import ActorPoolStrategy, DataContext

    resources = actor_resources(model)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # the job log gets our per-shard lines instead of redrawn bars
    context.execution_options.preserve_order = False  # commit shards as they finish, not in plan order
    items = [{"payload": json.dumps([r.to_dict() for r in shard])} for shard in shards]
    dataset = ray.data.from_items(items, override_num_blocks=len(items))
    results = dataset.map_batches(
        EngineWorker,
        fn_constructor_args=(model, str(model_path)),
        batch_size=1,
        compute=ActorPoolStrategy(size=replicas, max_tasks_in_flight_per_actor=shards_in_flight,
                                  max_concurrent_calls_per_actor=shards_in_flight),
        **resources,
    )
    for row in results.iter_rows():
        yield json.loads(row["result"])


def engine_result(data: dict[str, Any]) -> EngineResult:
    return EngineResult(**data)

