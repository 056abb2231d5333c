"""Long prompts are probed sparsely (every 8th block past the first 128): same answers, fewer lookups."""

from __future__ import annotations

import random

from engines.types import KVBlockRemoved, KVBlockStored, KVEventBatch
from router.kv_policy import RoutedBlocks
from router.prefix_index import DENSE_BLOCKS, PrefixIndex, probe_depths, probe_keys

BS = 2


def _prompt(seed: int, blocks: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.randrange(50_000) for _ in range(blocks * BS)]


def test_probe_depths_cover_the_dense_head_every_8th_block_and_the_last() -> None:
    assert probe_depths(5) == (0, 1, 2, 3, 4)
    depths = probe_depths(300)
    assert depths[:DENSE_BLOCKS] == tuple(range(DENSE_BLOCKS)) and depths[DENSE_BLOCKS] == DENSE_BLOCKS + 7
    assert depths[-1] == 299 and all(b - a <= 8 for a, b in zip(depths, depths[1:], strict=False))
    keys = list(range(1000, 1300))
    assert list(probe_keys(keys)) == [keys[d] for d in depths]


def test_matches_on_long_prompts_equal_a_block_by_block_walk() -> None:
    index = PrefixIndex(BS)
    document = _prompt(1, 400)
    cuts = {"a": 400, "b": 250, "c": 133, "d": 131, "e": 90}  # replicas hold prefixes of these lengths
    for number, (replica, blocks) in enumerate(cuts.items()):
        index.apply(replica, KVEventBatch(0, 0.0, [KVBlockStored(list(range(blocks)), None,
                                                                   document[: blocks * BS], BS)]))
    for length in (400, 300, 251, 250, 140, 133, 100):
        keys = index.prompt_keys(document[: length * BS] + _prompt(length, 7))
        expected = {replica: min(blocks, length) for replica, blocks in cuts.items()}
        assert index.matched_blocks(keys, list(cuts) + ["z"]) == expected | {"z": 0}
    # A tail evicted from the middle of a probe stride is found block by block.
    index.apply("a", KVEventBatch(1, 0.0, [KVBlockRemoved(list(range(203, 400)))]))
    assert index.matched_blocks(index.prompt_keys(document), ["a"]) == {"a": 203}


def test_routed_marks_on_long_prompts_extend_from_the_index_match() -> None:
    index = PrefixIndex(BS)
    routed = RoutedBlocks(ttl_s=5.0, capacity_blocks=10_000, clock=lambda: 0.0)
    keys = index.prompt_keys(_prompt(2, 300))
    routed.mark("a", keys, start=40)
    assert routed.size("a") == len([d for d in probe_depths(300) if d >= 40])
    matched = {"a": 40, "b": 0}
    routed.extend_matches(keys, matched)
    assert matched == {"a": 300, "b": 0}
    other = index.prompt_keys(_prompt(2, 300)[: 180 * BS] + _prompt(3, 120))  # shares 180 blocks
    # Probes at 175 (same prefix, marked) and 183 (diverged): the run ends after block 175, 4 short of the
    # 180 truly shared; an underestimate below 8 blocks is the price of the sparse marks.
    assert routed.leading_blocks("a", other, start=40) == 176 - 40
