"""CPU core lists in the kernel's notation ("0", "0-3", "0,2-3"), and the checks that keep a bound engine's
cores apart from the cores the serving path runs on.

Why it matters on a small CPU machine: vLLM's engine core busy-waits (sched_yield) on the worker's result,
so the worker computing the forward pass is the bottleneck, and any serving-path process the scheduler
places on the worker's core takes from the matmuls directly. `ray.serving_cpus` keeps Ray and everything
it starts on some cores; `engine.cpu_threads_bind` puts the worker on others (README, "Cores for the
engine, cores for the serving path").
"""

from __future__ import annotations

# vLLM's VLLM_CPU_OMP_THREADS_BIND values that bind to no fixed core list.
UNBOUND = ("auto", "nobind")


def parse_cpu_list(text: str) -> frozenset[int]:
    """"0,2-3" -> {0, 2, 3}. Raises ValueError naming the part that is not a core or a range of cores."""
    cpus: set[int] = set()
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not first.isdigit() or (dash and not last.isdigit()):
            raise ValueError(f"{text!r}: {part!r} is not a core number or a range like 0-3")
        low, high = int(first), int(last) if dash else int(first)
        if high < low:
            raise ValueError(f"{text!r}: range {part!r} runs backwards")
        cpus.update(range(low, high + 1))
    return frozenset(cpus)


def engine_bind_cpus(bind: str) -> list[frozenset[int]] | None:
    """The core list of each tensor-parallel rank in a VLLM_CPU_OMP_THREADS_BIND value ("0|1": rank 0 on
    core 0, rank 1 on core 1), or None when it binds to no fixed cores ("auto", "nobind")."""
    if bind in UNBOUND:
        return None
    return [parse_cpu_list(rank) for rank in bind.split("|")]


def format_cpus(cpus: frozenset[int] | set[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def check_engines_off_serving_cpus(serving: frozenset[int], engines: list[tuple[str, str, int]]) -> None:
    """With `ray.serving_cpus` set, every engine (model name, cpu_threads_bind, most replicas it may run)
    must be bound to cores of its own: none of the serving cores, none another engine has, and one
    replica only (every replica of a model gets the same bind, so two would share their cores).
    Raises ValueError naming the model and the cores."""
    taken: dict[int, str] = {}
    for name, bind, most_replicas in engines:
        ranks = engine_bind_cpus(bind)
        if ranks is None:
            raise ValueError(f"model {name!r}: ray.serving_cpus={format_cpus(serving)!r} keeps the serving path on "
                             f"those cores, so engine.cpu_threads_bind must name the engine's own cores "
                             f"(e.g. a core outside them), not {bind!r}")
        if most_replicas > 1:
            raise ValueError(f"model {name!r}: with ray.serving_cpus, a bound engine runs one replica (each "
                             f"replica would bind the same cores {bind!r}); got up to {most_replicas}")
        cores = frozenset().union(*ranks)
        shared = cores & serving
        if shared:
            raise ValueError(f"model {name!r}: engine.cpu_threads_bind={bind!r} uses serving core(s) "
                             f"{format_cpus(shared)} of ray.serving_cpus={format_cpus(serving)!r}")
        for core in sorted(cores):
            if core in taken:
                raise ValueError(f"model {name!r}: engine.cpu_threads_bind={bind!r} uses core {core}, which "
                                 f"model {taken[core]!r}'s engine is bound to")
            taken[core] = name
