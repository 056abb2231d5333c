"""Facts about the machine an engine runs on that change how it must be configured."""

from __future__ import annotations

from typing import Literal

Device = Literal["cpu", "gpu"]


def resolve_dtype(configured: str, device: Device) -> str:
    """Turn the config's dtype into what vLLM gets.

    On CPU `auto` means float32, where vLLM's own `auto` downcasts a float32 checkpoint to bfloat16. On CPUs
    without bf16 instructions that falls back to slow kernels and was measured to produce nonsense. On CPUs
    with them (AMX, AVX512-bf16) it runs, but SmolLM2 then answered "What is the capital of France?"
    without Paris, and its greedy text changed with batch composition (docs/reliability.md). GPUs keep
    vLLM's `auto` (the checkpoint's dtype). An explicit `bfloat16` is passed through on either.
    """
    if configured != "auto":
        return configured
    return "float32" if device == "cpu" else "auto"
