"""Facts about the machine an engine runs on that change how it must be configured."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Literal

Device = Literal["cpu", "gpu"]
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_flags() -> frozenset[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_native_bf16() -> bool:
    return any(flag in cpu_flags() for flag in _BF16_CPU_FLAGS)


def resolve_dtype(configured: str, device: Device) -> str:
    """Turn the config's dtype into what vLLM gets.

    On CPUs without bf16 instructions vLLM's default downcast to bfloat16 falls back to slow kernels and
    was measured to produce nonsense, so `auto` means float32 there. GPUs keep vLLM's own `auto`.
    """
    if configured != "auto":
        return configured
    if device == "cpu" and not cpu_has_native_bf16():
        return "float32"
    return "auto"
