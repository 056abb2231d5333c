"""Ray Serve's PrefixCacheAffinityRouter (ray.serve.llm), from its documentation.

- Load check: if the spread of queue lengths (ongoing requests per replica) is at least
  `imbalanced_threshold` (documented default: infinity, so never), fall back to power of two choices.
- Otherwise match the prompt text in a character prefix tree of what was routed where. Match rate
  (matched characters / prompt characters) >= `match_rate_threshold` (0.1): the replicas with the highest
  match, power of two among them; below it: the replicas holding the fewest characters in the tree
  ("lowest prefix cache utilization"), power of two among them; an empty tree: power of two.
- The chosen replica's tree gets the prompt text. Eviction is off by default (`do_eviction=False`).
"""

from __future__ import annotations

from router.sim.policies.simple import pow2_choice
from router.sim.policies.text_tree import TextPrefixTree
from router.sim.policy_api import SimContext, SimPolicy
from router.sim.request import SimRequest
from router.sim.text_render import render


class RayPrefixAffinity(SimPolicy):
    name = "ray_prefix"

    def __init__(self, context: SimContext, imbalanced_threshold: float = float("inf"),
                 match_rate_threshold: float = 0.1) -> None:
        self._clock = context.clock
        self._rng = context.rng
        self._queue = [0] * len(context.replica_ids)
        self._tree = TextPrefixTree()
        self._imbalanced = imbalanced_threshold
        self._threshold = match_rate_threshold

    def prepare(self, request: SimRequest) -> object:
        return render(request.source.tokens()[: request.prompt_len])

    def route(self, prepared: object, request: SimRequest) -> int:
        text: str = prepared  # type: ignore[assignment]
        queue = self._queue
        everyone = list(range(len(queue)))
        if max(queue) - min(queue) >= self._imbalanced or not self._tree.tenant_chars:
            chosen = pow2_choice(queue, self._rng)
        else:
            matched, tenants = self._tree.match(text)
            if text and matched / len(text) >= self._threshold and tenants:
                chosen = pow2_choice(queue, self._rng, among=sorted(tenants))
            else:
                chars = self._tree.tenant_chars
                fewest = min(chars.get(r, 0) for r in everyone)
                chosen = pow2_choice(queue, self._rng, among=[r for r in everyone if chars.get(r, 0) == fewest])
        self._tree.insert(text, chosen, self._clock())
        queue[chosen] += 1
        return chosen

    def on_finished(self, request: SimRequest, replica: int) -> None:
        self._queue[replica] -= 1
