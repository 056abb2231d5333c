"""SGLang's cache-aware router (sgl-router), from its documentation and defaults.

- Load = requests this router has in flight per worker. Imbalanced when max - min > `balance_abs_threshold`
  (64) and max > `balance_rel_threshold` (1.5) x min: then the least loaded worker.
- Otherwise match the prompt text in the approximate radix tree of what was routed where. Match rate
  (matched / prompt characters) > `cache_threshold` (0.3): the worker holding the longest match (the
  least loaded of those, if several); else the worker with the smallest tree (most cache room).
- The chosen worker's tree gets the text either way. Tree eviction (`max_tree_size` 2**26 characters per
  worker) is not modelled: no run here comes near it.
"""

from __future__ import annotations

from router.sim.policies.text_tree import TextPrefixTree
from router.sim.policy_api import SimContext, SimPolicy
from router.sim.request import SimRequest
from router.sim.text_render import render


class SGLangCacheAware(SimPolicy):
    name = "sglang"

    def __init__(self, context: SimContext, cache_threshold: float = 0.3, balance_abs_threshold: int = 64,
                 balance_rel_threshold: float = 1.5) -> None:
        self._clock = context.clock
        self._rng = context.rng
        self._load = [0] * len(context.replica_ids)
        self._tree = TextPrefixTree()
        self._cache_threshold = cache_threshold
        self._abs = balance_abs_threshold
        self._rel = balance_rel_threshold

    def prepare(self, request: SimRequest) -> object:
        return render(request.source.tokens()[: request.prompt_len])

    def _least(self, among: list[int], key: list[int] | dict[int, int]) -> int:
        values = [key[r] if isinstance(key, list) else key.get(r, 0) for r in among]
        best = min(values)
        return self._rng.choice([r for r, v in zip(among, values, strict=True) if v == best])

    def route(self, prepared: object, request: SimRequest) -> int:
        text: str = prepared  # type: ignore[assignment]
        load = self._load
        everyone = list(range(len(load)))
        high, low = max(load), min(load)
        if high - low > self._abs and high > self._rel * low:
            chosen = self._least(everyone, load)
        else:
            matched, tenants = self._tree.match(text)
            if text and matched / len(text) > self._cache_threshold and tenants:
                chosen = self._least(sorted(tenants), load)
            else:
                chosen = self._least(everyone, self._tree.tenant_chars)
        self._tree.insert(text, chosen, self._clock())
        load[chosen] += 1
        return chosen

    def on_finished(self, request: SimRequest, replica: int) -> None:
        self._load[replica] -= 1
