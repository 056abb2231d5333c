"""The typed schema of a warmserve deployment.

Loaded once by `configs.loader.load_config`, then handed down as objects: components never read
environment variables or YAML themselves. Every model forbids unknown keys and bounds every number, so a
typo or an absurd value fails at load time with the field path, not at the first request.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from configs.base import StrictModel
from configs.cpu_sets import check_engines_off_serving_cpus, engine_bind_cpus, parse_cpu_list
from configs.ray_schema import RayConfig
from configs.model_versions import MODEL_NAME_PATTERN, check_versions, check_weight_on_version
from configs.vision_schema import VisionModelConfig
from configs.reliability_schema import (
    AdmissionConfig,
    AutoscalingConfig,
    DrainConfig,
    FailoverConfig,
    HealthConfig,
)
from configs.observability_schema import ObservabilityConfig
from configs.security_schema import SecurityConfig


class HttpConfig(StrictModel):
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1024, le=65535)
    # Who holds the client's HTTP connection. "haproxy": Ray Serve's HAProxy data plane, which forwards
    # straight to the ingress replicas' own HTTP servers (direct ingress), so no Python proxy actor and
    # no Ray hop sit between the client and the ingress. "proxy": Serve's classic proxy actor.
    # Applied when `warmserve up` starts the Ray head; a joined cluster keeps the mode its nodes run.
    data_plane: Literal["haproxy", "proxy"] = "haproxy"
    # Where HAProxy's statistics page and Prometheus exporter listen (HAProxy data plane). Neither has
    # authentication, so loopback by default; a Prometheus on another node needs a reachable address.
    haproxy_admin_host: str = Field(default="127.0.0.1", min_length=1)
    # Ceiling on how long the ingress waits for one engine request before answering 504.
    request_timeout_s: float = Field(default=600.0, gt=0, le=86_400)
    # Concurrent requests one ingress replica accepts. Ray Serve's default (5) queued requests in the
    # proxy and halved throughput at concurrency 8 (measured: 0.52x raw vLLM); engines bound the real work.
    ingress_max_ongoing_requests: int = Field(default=1024, ge=1, le=100_000)
    # Scheduling priority of every thread of the ingress replicas. Ray starts them at nice 15, below the
    # engines (`engine.process_niceness`, 0): with the engines saturating every core, an ingress at 15 got
    # ~2% of a core, and a burst of 700 requests beyond the admission bound waited 64-154 s for its 503s
    # (docs/benchmarks.md, "Overload"). 0 is the layout raw vLLM runs (its API server at the engine's
    # priority). Lowering niceness needs CAP_SYS_NICE; without it the ingress keeps Ray's. None keeps Ray's.
    ingress_niceness: int | None = Field(default=0, ge=-20, le=19)


class PlacementConfig(StrictModel):
    """The hardware one model's replicas run on; checked against the engine's TP x PP shape at load.

    GPU: `nodes` nodes with `gpus_per_node` GPUs each are available to this model's replicas. A replica
    that fits on one node stays on one node; a larger one spans as few nodes as it can, each holding whole
    TP groups, so tensor parallelism stays inside a node and only pipeline stages cross nodes.
    CPU: each replica on one node, every engine worker on its own cores (vLLM runs only TP on CPU).
    """

    device: Literal["cpu", "gpu"] = "cpu"
    # Nodes this model's replicas may use (GPU); a replica spans as few of them as its shape allows.
    nodes: int = Field(default=1, ge=1, le=1024)
    gpus_per_node: int = Field(default=0, ge=0, le=64)
    # CPU cores one engine worker owns; on CPU each TP worker needs its own core.
    cpus_per_worker: float = Field(default=1.0, gt=0, le=256)

    def replica_node_shares(self, tensor_parallel_size: int, pipeline_parallel_size: int) -> list[int]:
        """GPUs (engine workers) one replica takes on each node it spans: full nodes first, then the rest.

        Ray's PACK strategy fills nodes the same way, so with `gpus_per_node` a multiple of the TP size
        every node holds whole TP groups. Called by the checks below, `engines.placement` (bundles and
        strategy) and `cluster.placement_plan` (the layout a preflight expects). CPU: always one node.
        """
        workers = tensor_parallel_size * pipeline_parallel_size
        if self.device == "cpu" or workers <= self.gpus_per_node or self.gpus_per_node == 0:
            return [workers]
        full, rest = divmod(workers, self.gpus_per_node)
        return [self.gpus_per_node] * full + ([rest] if rest else [])

    def nodes_for_replicas(self, tensor_parallel_size: int, pipeline_parallel_size: int, replicas: int) -> int:
        """Nodes `replicas` replicas of this shape need on empty nodes: each replica's full nodes, plus its
        partly used node shared with other replicas' partly used nodes where their GPUs fit together."""
        shares = self.replica_node_shares(tensor_parallel_size, pipeline_parallel_size)
        full = sum(1 for share in shares if share == self.gpus_per_node)
        partial = [share for share in shares if share < self.gpus_per_node]
        nodes = replicas * full
        if partial:
            per_node = max(1, self.gpus_per_node // partial[0])
            nodes += -(-replicas // per_node)
        return nodes


class EngineConfig(StrictModel):
    """Engine options for one LLM replica. `kind="fake"` is the deterministic engine for tests."""

    kind: Literal["vllm", "fake"] = "vllm"
    tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    pipeline_parallel_size: int = Field(default=1, ge=1, le=64)
    max_model_len: int = Field(default=2048, ge=16, le=1_048_576)
    max_num_seqs: int = Field(default=16, ge=1, le=4096)
    max_num_batched_tokens: int | None = Field(default=None, ge=16, le=1_048_576)
    # Tokens per KV block; also the router's hashing granularity. vLLM's CPU attention needs a multiple
    # of 32 (checked against placement in LLMModelConfig).
    block_size: int = Field(default=32, ge=1, le=1024)
    # "auto" resolves to float32 on CPU (bfloat16 gave slow kernels and wrong answers on CPUs without bf16
    # instructions, and a wrong answer and batch-dependent greedy text on CPUs with them) and to the
    # checkpoint's dtype on GPU; see engines.platform.
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    enforce_eager: bool = True
    # vLLM's `quantization`: a pre-quantized checkpoint's method (awq, gptq, compressed-tensors) or one
    # applied at load (fp8 on GPU; int8_per_channel_weight_only, which also runs on CPU, in bf16/fp16). A
    # quantized variant is best served as a version of the full-precision model (`<model>@fp8`), so it can
    # be canaried against it (docs/operations.md).
    quantization: Literal["fp8", "int8_per_channel_weight_only", "awq", "gptq", "compressed-tensors"] | None = None
    enable_prefix_caching: bool = True
    kv_cache_space_gb: float = Field(default=1.0, gt=0, le=4096, description="CPU KV cache per engine")
    gpu_memory_utilization: float = Field(default=0.85, gt=0, le=1)
    # vLLM's CPU OpenMP binding: "auto", "nobind", or explicit core lists like "0|1" for TP=2.
    cpu_threads_bind: str = Field(default="nobind", min_length=1, max_length=256)
    omp_num_threads: int = Field(default=1, ge=1, le=512)
    kv_events: bool = True
    # Who can follow the engine's KV events, which carry prompt token ids. "node": routers on the
    # replica's own node, through a private Unix socket (the ingress shares the node in a one-node
    # cluster). "cluster": also routers on other nodes, through a relay on the node's address encrypted
    # and authenticated with keys derived from Ray's authentication token (engines/kv_events_relay.py).
    kv_events_network: Literal["node", "cluster"] = "node"
    # Tokens the engine gathers per streamed chunk after the first (vLLM's `stream_interval`; the first
    # token always goes at once, the rest with the finish). 1 (vLLM's default) streams every token. Each
    # chunk is one gRPC message from the replica to the ingress; over that channel 4 changed tokens/s on
    # a 2-core x86 CPU VM within noise (docs/benchmarks.md, "Transport"), while clients see tokens in groups.
    stream_interval: int = Field(default=1, ge=1, le=1024)
    # Scheduling priority of the engine's own processes. Ray starts every worker (replicas included) at
    # nice 15; raising just the engine above the request path gave +9% tokens/s on a 2-core x86 CPU VM
    # (docs/benchmarks.md). Lowering niceness needs CAP_SYS_NICE; without it the engine keeps Ray's.
    process_niceness: int | None = Field(default=0, ge=-20, le=19)
    # Scheduling priority of every thread of the process that hosts the engine's front end (the LLM
    # replica actor or batch actor: vLLM's AsyncLLM output processing and detokenization). Ray starts it at
    # nice 15, below the engine core it feeds; 0 is the layout raw vLLM runs (its API server at the engine's
    # priority). Its effect on tokens/s is within this 2-core host's noise over seven A/B invocations
    # (docs/benchmarks.md, "The engine's front end at the engine's priority"). None keeps Ray's.
    frontend_niceness: int | None = Field(default=0, ge=-20, le=19)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    # Fake engine only: simulated seconds per decoded token (0 = as fast as possible).
    fake_token_latency_s: float = Field(default=0.0, ge=0, le=10)
    # Fault injection, any engine: the fraction of requests the replica fails at once with an error instead
    # of generating (deployments/llm_replica.py). For drills: a version that answers with errors, to see a
    # rollout roll it back. 0 in production.
    injected_error_rate: float = Field(default=0.0, ge=0, le=1)
    # Fake engine only: a directory where tests drop one-shot fault files named `<replica id>.json`
    # (engines/fake_engine.py) to kill or stall that replica's engine mid-stream.
    fake_fault_dir: str | None = None

    @model_validator(mode="after")
    def _bind_is_a_core_list(self) -> EngineConfig:
        try:
            engine_bind_cpus(self.cpu_threads_bind)
        except ValueError as error:
            raise ValueError(f"engine.cpu_threads_bind: expected 'auto', 'nobind' or core lists per TP rank "
                             f"like '0|1': {error}") from None
        return self

    @model_validator(mode="after")
    def _fake_has_no_parallelism(self) -> EngineConfig:
        if self.kind == "fake" and self.tensor_parallel_size * self.pipeline_parallel_size != 1:
            raise ValueError(
                "engine.kind='fake' runs in-process and supports only tensor_parallel_size=1 and "
                f"pipeline_parallel_size=1 (got {self.tensor_parallel_size} x {self.pipeline_parallel_size})"
            )
        if self.kind == "fake" and self.quantization is not None:
            raise ValueError(f"engine.quantization={self.quantization!r} needs engine.kind='vllm' (the fake "
                             "engine has no weights to quantize)")
        if self.quantization == "int8_per_channel_weight_only" and self.dtype not in ("bfloat16", "float16"):
            raise ValueError(f"engine.quantization='int8_per_channel_weight_only' computes in 16 bits: set "
                             f"engine.dtype to bfloat16 or float16 (got {self.dtype!r})")
        if self.max_num_batched_tokens is not None and self.max_num_batched_tokens < self.max_num_seqs:
            raise ValueError(
                f"engine.max_num_batched_tokens ({self.max_num_batched_tokens}) must be >= "
                f"engine.max_num_seqs ({self.max_num_seqs})"
            )
        return self


class RequestLimits(StrictModel):
    """Per-request bounds the ingress enforces before any engine work."""

    max_n: int = Field(default=4, ge=1, le=128)
    max_tokens_default: int = Field(default=256, ge=1, le=1_048_576)
    max_stop_sequences: int = Field(default=8, ge=0, le=64)
    max_stop_length_chars: int = Field(default=128, ge=1, le=4096)
    # Longest prompt (in tokens, after the chat template) accepted; None = what max_model_len leaves room for.
    max_prompt_tokens: int | None = Field(default=None, ge=1, le=1_048_576)
    # Largest max_tokens a request may ask for; None = what max_model_len leaves after the prompt.
    max_tokens_limit: int | None = Field(default=None, ge=1, le=1_048_576)


class RouterConfig(StrictModel):
    """How the ingress picks an LLM replica for each request (router/).

    `kv_aware`: cost = uncached_block_weight x uncached prompt blocks + load blocks, from the engines' KV
    events (or routing history alone when `engine.kv_events` is off); `pow2`: Ray Serve's default
    power-of-two-choices router; `round_robin`: in turn; `ray_prefix_affinity`: Ray Serve LLM's
    PrefixCacheAffinityRouter (the peer), for side-by-side benchmarks.
    """

    policy: Literal["kv_aware", "pow2", "round_robin", "ray_prefix_affinity"] = "kv_aware"
    # An uncached block costs its prefill now and as much again in capacity taken from later requests;
    # 5 measured best across the simulator's workloads, 1-2 split shared prefixes needlessly
    # (docs/benchmarks.md, "Router: simulated"). Loads are in prefill blocks (router/load_tracker.py).
    uncached_block_weight: float = Field(default=5.0, ge=0, le=1000)
    # Weight of a replica's recent share of requests in its load (prefill blocks per request), so a replica
    # holding hot prefixes stops drawing new ones before its queue shows it. It scales with a decode step
    # measured in prefill-block times: None = 6 on CPU, 30 on GPU (simulator calibration).
    balance_blocks: float | None = Field(default=None, ge=0, le=10_000)
    # How long a routed-but-unconfirmed prefix is assumed cached on its replica. With KV events this
    # only bridges the gap until the engine's BlockStored arrives; without them it is the cache lifetime.
    routed_blocks_ttl_s: float = Field(default=5.0, gt=0, le=86_400)
    # What a prompt no replica holds any block of pays per live prefix (young or recurring) a replica
    # already owns, counted from the router's own decisions (router/prefix_owners.py), so new shared
    # prefixes spread evenly instead of by momentary load; 0 places them by load alone.
    new_prefix_spread_blocks: float = Field(default=1024.0, ge=0, le=1_000_000)
    approximate_ttl_s: float = Field(default=120.0, gt=0, le=86_400)
    # Blocks per replica the router's own routing memory keeps (LRU), near an engine's KV capacity.
    routed_blocks_capacity: int = Field(default=16_384, ge=1, le=100_000_000)
    # How often replicas report load and their KV event endpoint to routers (Serve's routing stats). Each
    # report is a controller RPC per replica plus a broadcast to every router, CPU the engines compete for
    # on a 2-core CPU host; a router's own in-flight count is exact anyway, so reports only add other
    # routers' work and discover new replicas' event endpoints (routed-block memory bridges until then).
    stats_period_s: float = Field(default=2.0, gt=0, le=600)


class LLMModelConfig(StrictModel):
    """One served LLM: which weights, how many replicas, and how each replica runs its engine."""

    # `<model>` or `<model>@<version>`: the versions of one model share its name in requests, which are
    # split between them by `traffic_weight` (configs/model_versions.py, router/traffic_split.py).
    name: str = Field(min_length=1, max_length=128, pattern=MODEL_NAME_PATTERN)
    # A model-store name (see engines.model_store) or a local Hugging Face-style directory.
    model: str = Field(min_length=1, max_length=4096)
    num_replicas: int = Field(default=1, ge=1, le=1024)
    engine: EngineConfig = EngineConfig()
    placement: PlacementConfig = PlacementConfig()
    limits: RequestLimits = RequestLimits()
    router: RouterConfig = RouterConfig()
    failover: FailoverConfig = FailoverConfig()
    health: HealthConfig = HealthConfig()
    drain: DrainConfig = DrainConfig()
    admission: AdmissionConfig = AdmissionConfig()
    # Set: the replica count follows load between its bounds (and `num_replicas` is not used).
    autoscaling: AutoscalingConfig | None = None
    # Logical CPUs the Serve replica actor itself reserves (its engine workers reserve their own).
    replica_num_cpus: float = Field(default=1.0, ge=0, le=256)
    max_ongoing_requests: int = Field(default=64, ge=1, le=100_000)
    # A version's share of the requests for its bare model name, relative to its sibling versions'
    # weights; 0 = reached only when pinned (a version warming up before a rollout). Versions only.
    traffic_weight: float = Field(default=1.0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _weight_only_on_versions(self) -> LLMModelConfig:
        check_weight_on_version(self.name, self.traffic_weight)
        return self

    @model_validator(mode="after")
    def _shape_fits_placement(self) -> LLMModelConfig:
        tp, pp = self.engine.tensor_parallel_size, self.engine.pipeline_parallel_size
        workers = tp * pp
        p = self.placement
        if p.device == "gpu":
            if p.gpus_per_node == 0:
                raise ValueError(f"model {self.name!r}: placement.device='gpu' needs placement.gpus_per_node >= 1")
            if tp > p.gpus_per_node:
                raise ValueError(
                    f"model {self.name!r}: tensor_parallel_size={tp} exceeds "
                    f"placement.gpus_per_node={p.gpus_per_node}; a TP group must share one node"
                )
            capacity = p.gpus_per_node * p.nodes
            if workers > capacity:
                raise ValueError(
                    f"model {self.name!r}: tensor_parallel_size x pipeline_parallel_size = "
                    f"{tp} x {pp} = {workers} GPUs, but placement has {p.gpus_per_node} GPUs/node x "
                    f"{p.nodes} nodes = {capacity}: short by {workers - capacity} GPUs"
                )
            if workers > p.gpus_per_node and p.gpus_per_node % tp:
                raise ValueError(
                    f"model {self.name!r}: a replica of {tp} x {pp} = {workers} GPUs spans nodes, so each node "
                    f"must hold whole TP groups, but placement.gpus_per_node={p.gpus_per_node} is not a multiple "
                    f"of tensor_parallel_size={tp} (Ray packs every GPU of a node, splitting a TP group)"
                )
            shares = p.replica_node_shares(tp, pp)
            needed = p.nodes_for_replicas(tp, pp, self.num_replicas)
            if needed > p.nodes:
                raise ValueError(
                    f"model {self.name!r}: num_replicas={self.num_replicas} replicas of {tp} x {pp} = {workers} "
                    f"GPUs (each on {len(shares)} node(s), GPUs per node {shares}) need {needed} nodes of "
                    f"{p.gpus_per_node} GPUs, but placement.nodes={p.nodes}: short by {needed - p.nodes} node(s)"
                )
        else:
            if self.engine.pipeline_parallel_size != 1:
                raise ValueError(
                    f"model {self.name!r}: pipeline_parallel_size={self.engine.pipeline_parallel_size} "
                    "is not supported by vLLM on CPU; use placement.device='gpu'"
                )
            if self.engine.quantization == "fp8":
                raise ValueError(f"model {self.name!r}: engine.quantization='fp8' needs placement.device='gpu' "
                                 "(vLLM's FP8 kernels are CUDA kernels)")
            ranks = engine_bind_cpus(self.engine.cpu_threads_bind)
            if self.engine.kind == "vllm" and ranks is not None and len(ranks) != self.engine.tensor_parallel_size:
                raise ValueError(
                    f"model {self.name!r}: engine.cpu_threads_bind={self.engine.cpu_threads_bind!r} gives "
                    f"{len(ranks)} core list(s) but tensor_parallel_size={self.engine.tensor_parallel_size}: one "
                    "list per TP worker, separated by '|'"
                )
            if self.engine.kind == "vllm" and self.engine.block_size % 32:
                raise ValueError(
                    f"model {self.name!r}: engine.block_size={self.engine.block_size} must be a multiple of 32 "
                    "on CPU (vLLM's CPU attention backend)"
                )
            if self.engine.max_model_len < self.engine.block_size:
                raise ValueError(
                    f"model {self.name!r}: engine.max_model_len ({self.engine.max_model_len}) is smaller "
                    f"than engine.block_size ({self.engine.block_size})"
                )
        return self

    def most_replicas(self) -> int:
        return self.autoscaling.max_replicas if self.autoscaling is not None else self.num_replicas


class ClusterConfig(StrictModel):
    """A whole warmserve deployment: where Ray runs, the HTTP endpoint and the served models."""

    ray: RayConfig = RayConfig()
    http: HttpConfig = HttpConfig()
    # LLMs and image classifiers; a config may serve either kind alone, but not nothing (checked below).
    models: list[LLMModelConfig] = Field(default=[], max_length=64)
    vision_models: list[VisionModelConfig] = Field(default=[], max_length=64)
    # Where the model store keeps prepared checkpoints; None = ~/.cache/warmserve/models.
    model_cache_dir: str | None = None
    security: SecurityConfig = SecurityConfig()
    observability: ObservabilityConfig = ObservabilityConfig()

    @model_validator(mode="after")
    def _unique_model_names(self) -> ClusterConfig:
        if not self.models and not self.vision_models:
            raise ValueError("no models: give at least one entry in models or vision_models")
        # One namespace: /v1/models lists both kinds and a request names its model alone.
        names = [m.name for m in self.models] + [m.name for m in self.vision_models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models: duplicate model names {duplicates}")
        check_versions([(m.name, m.traffic_weight) for m in self.models],
                       [(m.name, m.traffic_weight) for m in self.vision_models])
        # A JSON body carries an image base64-encoded: 4/3 of its bytes.
        largest_image = max((m.max_image_bytes for m in self.vision_models), default=0)
        if largest_image * 4 // 3 > self.security.max_body_bytes:
            raise ValueError(f"security.max_body_bytes ({self.security.max_body_bytes}) cannot hold a base64 image "
                             f"of vision max_image_bytes ({largest_image}): raise it to at least "
                             f"{largest_image * 4 // 3 + 1024}")
        return self

    @model_validator(mode="after")
    def _engines_off_serving_cpus(self) -> ClusterConfig:
        if self.ray.serving_cpus is not None:
            engines = [(m.name, m.engine.cpu_threads_bind, m.most_replicas()) for m in self.models
                       if m.engine.kind == "vllm" and m.placement.device == "cpu"]
            check_engines_off_serving_cpus(parse_cpu_list(self.ray.serving_cpus), engines)
        return self
