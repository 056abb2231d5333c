"""Which requests still need running, in what order, cut into shards.

Pure functions, called by `cluster.batch` before either runner starts. Resuming needs no memory of the
previous run's shard boundaries: whatever is not committed is planned again from scratch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from cluster.batch_input import BatchLine

T = TypeVar("T")


def pending_lines(lines: Sequence[BatchLine], committed: set[str] | dict[str, object]) -> list[BatchLine]:
    """Input lines whose custom_id has no committed result yet, in input order."""
    return [line for line in lines if line.custom_id not in committed]


def prefix_sorted(items: Sequence[T], prompt_of: Callable[[T], list[int]]) -> list[T]:
    """Order requests by their prompt token ids, so requests sharing a prefix (a system prompt, a
    document, few-shot examples) sit next to each other: they land in the same shard, reach the same
    engine together and hit its prefix cache instead of evicting each other's blocks. Stable, so equal
    prompts keep input order."""
    return sorted(items, key=prompt_of)


def cut_shards(items: Sequence[T], shard_size: int) -> list[list[T]]:
    """Consecutive groups of at most `shard_size` (>= 1) items; the last may be smaller."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [list(items[i:i + shard_size]) for i in range(0, len(items), shard_size)]
