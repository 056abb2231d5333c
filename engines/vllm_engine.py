"""`VLLMEngine`: the `LLMEngine` protocol over vLLM's `AsyncLLM` (token ids in, token ids + text out).

Created inside an LLM replica actor. vLLM is imported lazily so that configs, tests and the ingress can
import this module's package without paying vLLM's ~50 s import.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from configs.schema import EngineConfig, PlacementConfig
from engines.kv_events_endpoint import KVEventsEndpoint
from engines.placement import executor_backend
from engines.platform import resolve_dtype
from engines.process_priority import set_child_niceness, set_own_niceness
from engines.protocol import EngineDeadError, served_finish_reason
from engines.types import EngineStats, GenerationRequest, OutputChunk

logger = logging.getLogger("warmserve.engine")


@dataclass(slots=True)
class _SchedulerSnapshot:
    num_running: int = 0
    num_waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_queries_tokens: int = 0
    prefix_hits_tokens: int = 0


def _snapshot_logger_factory(snapshot: _SchedulerSnapshot) -> Any:
    """A vLLM stat logger that keeps the latest scheduler stats where `stats()` can read them."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class SnapshotLogger(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats: Any, iteration_stats: Any, mm_cache_stats: Any = None,
                   engine_idx: int = 0) -> None:
            if scheduler_stats is None:
                return
            snapshot.num_running = scheduler_stats.num_running_reqs
            snapshot.num_waiting = scheduler_stats.num_waiting_reqs
            snapshot.kv_cache_usage = scheduler_stats.kv_cache_usage
            prefix = scheduler_stats.prefix_cache_stats
            if prefix.reset:
                snapshot.prefix_queries_tokens = snapshot.prefix_hits_tokens = 0
            snapshot.prefix_queries_tokens += prefix.queries
            snapshot.prefix_hits_tokens += prefix.hits

        def log_engine_initialized(self) -> None:
            pass

    return SnapshotLogger


def apply_cpu_environment(engine: EngineConfig) -> None:
    """vLLM's CPU backend takes these settings only from the environment of the engine's process.

    The replica calls this before the engine starts, so the engine-core and worker processes vLLM spawns
    inherit them. Values come from the typed config, never from the user's shell.
    """
    os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(max(1, round(engine.kv_cache_space_gb)))
    os.environ["VLLM_CPU_OMP_THREADS_BIND"] = engine.cpu_threads_bind
    os.environ["OMP_NUM_THREADS"] = str(engine.omp_num_threads)


class VLLMEngine:
    """One vLLM `AsyncLLM` with prefix caching and (optionally) KV events published over ZMQ."""

    def __init__(self, model_path: Path, engine: EngineConfig, placement: PlacementConfig,
                 kv_events: KVEventsEndpoint | None) -> None:
        self._model_path = model_path
        self._config = engine
        self._placement = placement
        self.block_size = engine.block_size
        self.max_model_len = engine.max_model_len
        # `ipc://` endpoints (engines/kv_events_endpoint.py): vLLM's publisher binds them, and they are
        # reachable only through the file system, never the network.
        self._kv_events = kv_events if engine.kv_events else None
        self._kv_events_endpoint = self._kv_events.address if self._kv_events else None
        self._snapshot = _SchedulerSnapshot()
        self._llm: Any = None

    def _engine_args(self) -> Any:
        from vllm.config import KVEventsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs

        cfg = self._config
        on_cpu = self._placement.device == "cpu"
        # One worker ("uni"): None lets vLLM pick its in-process executor, as it always did here.
        backend = executor_backend(cfg, self._placement)
        kv_events = None
        if self._kv_events is not None:
            kv_events = KVEventsConfig(enable_kv_cache_events=True, publisher="zmq",
                                       endpoint=self._kv_events.address,
                                       replay_endpoint=self._kv_events.replay_address)
        return AsyncEngineArgs(
            model=str(self._model_path),
            tokenizer=str(self._model_path),
            dtype=resolve_dtype(cfg.dtype, self._placement.device),
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs,
            max_num_batched_tokens=cfg.max_num_batched_tokens,
            block_size=cfg.block_size,
            enable_prefix_caching=cfg.enable_prefix_caching,
            enforce_eager=cfg.enforce_eager,
            quantization=cfg.quantization,
            tensor_parallel_size=cfg.tensor_parallel_size,
            pipeline_parallel_size=cfg.pipeline_parallel_size,
            # `mp` workers inside the replica on one node (the replica owns their resources; the only
            # choice on CPU, where vLLM's Ray executor does not run); `ray` on GPUs when the replica spans
            # nodes: vLLM then starts one worker per GPU bundle of the replica's own placement group,
            # which it finds itself (`ray.util.get_current_placement_group()` inside the replica actor).
            distributed_executor_backend=None if backend == "uni" else backend,
            gpu_memory_utilization=cfg.gpu_memory_utilization if not on_cpu else 0.9,
            seed=cfg.seed,
            kv_events_config=kv_events,
            disable_log_stats=False,
            enable_log_requests=False,
            stream_interval=cfg.stream_interval,
        )

    async def start(self) -> None:
        if self._placement.device == "cpu":
            apply_cpu_environment(self._config)
        from vllm.v1.engine.async_llm import AsyncLLM

        self._llm = AsyncLLM.from_engine_args(
            self._engine_args(), stat_loggers=[_snapshot_logger_factory(self._snapshot)]
        )
        if self._config.process_niceness is not None:
            set_child_niceness(self._config.process_niceness)
        # After AsyncLLM exists, so the threads it started (output handling, ZMQ) are reniced too.
        if self._config.frontend_niceness is not None:
            set_own_niceness(self._config.frontend_niceness)

    def _sampling_params(self, request: GenerationRequest) -> Any:
        from vllm.sampling_params import RequestOutputKind, SamplingParams

        spec = request.sampling
        return SamplingParams(
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            seed=spec.seed,
            stop=spec.stop or None,
            ignore_eos=spec.ignore_eos,
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, request: GenerationRequest) -> AsyncIterator[OutputChunk]:
        if self._llm is None or self._llm.errored:
            raise EngineDeadError("vLLM engine is not running")
        from vllm.v1.engine.exceptions import EngineDeadError as VLLMEngineDeadError

        prompt = {"prompt_token_ids": request.prompt_token_ids}
        num_prompt_tokens = len(request.prompt_token_ids)
        stream = self._llm.generate(prompt, self._sampling_params(request), request.request_id)
        cached: int | None = None
        try:
            async for output in stream:
                if output.num_cached_tokens is not None:
                    cached = output.num_cached_tokens
                completion = output.outputs[0]
                finish = completion.finish_reason if output.finished else None
                yield OutputChunk(
                    request_id=request.request_id,
                    token_ids=list(completion.token_ids),
                    text=completion.text,
                    finish_reason=served_finish_reason(finish),
                    num_prompt_tokens=num_prompt_tokens,
                    num_cached_prompt_tokens=cached,
                    stop_reason=completion.stop_reason if output.finished else None,
                )
        except VLLMEngineDeadError as error:
            # Its engine-core process died: the protocol's error, which the replica and the ingress fail
            # over from (every other error passes unchanged).
            raise EngineDeadError(f"vLLM engine core died: {error}") from None
        finally:
            # Closing vLLM's generator aborts the request inside the engine (client gone, replica
            # shutting down); on normal completion this is a no-op.
            await stream.aclose()

    async def abort(self, request_id: str) -> None:
        if self._llm is not None:
            await self._llm.abort(request_id)

    async def stats(self) -> EngineStats:
        snap = self._snapshot
        hit_rate = snap.prefix_hits_tokens / snap.prefix_queries_tokens if snap.prefix_queries_tokens else None
        return EngineStats(
            num_running=snap.num_running,
            num_waiting=snap.num_waiting,
            kv_cache_usage=snap.kv_cache_usage,
            prefix_cache_hit_rate=hit_rate,
            kv_events_endpoint=self._kv_events_endpoint,
        )

    async def check_health(self) -> None:
        if self._llm is None:
            raise EngineDeadError("vLLM engine was never started")
        try:
            await asyncio.wait_for(self._llm.check_health(), timeout=10)
        except Exception as error:
            raise EngineDeadError(f"vLLM engine is unhealthy: {error}") from error

    async def shutdown(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None

