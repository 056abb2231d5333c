"""Which replica each recent prompt root was placed on, and how many live prefixes each replica owns.

Why: a prompt that no replica holds any block of is placed by load alone, and load cannot know how much
traffic the new prefix will bring. With 64 shared prefixes on 16 replicas that leaves some replica with 5
groups and another with 3, and the first one's queue dominates TTFT (docs/benchmarks.md, "Router:
simulated"). Ray's and SGLang's text routers place an unseen prefix on the replica with the smallest tree
and get 4 each. This is the same idea in the policy's terms: how many prefixes a replica owns, counted
from the policy's own decisions the moment they are made (an engine's KV events arrive seconds later on
CPU, too late for a burst of new groups).

A root (a prompt's first block key) counts for its owner while it is young (placed within the last
`young_window` placements: a new group's next requests are on their way) and, after that, only if it
recurred (used at least twice): a prompt whose root never comes back costs no future capacity, so unique
prompts stop weighing on placement once they age. Bounded (LRU over `capacity_roots`); no clock, no Ray.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from router.prefix_index import ReplicaId

DEFAULT_CAPACITY_ROOTS = 4096
DEFAULT_YOUNG_WINDOW = 256


@dataclass(slots=True)
class _Root:
    replica: ReplicaId
    uses: int
    placed_at: int  # placement sequence number
    counted: bool


class PrefixOwners:
    """Who calls: `KVAwarePolicy.choose`, once per decision; the adapter when a replica goes away.
    Not thread-safe (one owner, the router's event loop). capacity_roots, young_window >= 1."""

    def __init__(self, capacity_roots: int = DEFAULT_CAPACITY_ROOTS, young_window: int = DEFAULT_YOUNG_WINDOW) -> None:
        if capacity_roots < 1 or young_window < 1:
            raise ValueError(f"capacity_roots and young_window must be >= 1, got {capacity_roots}, {young_window}")
        self._capacity = capacity_roots
        self._window = young_window
        self._roots: OrderedDict[int, _Root] = OrderedDict()
        self._owned: dict[ReplicaId, int] = {}
        self._young: deque[tuple[int, int]] = deque()  # (root, placed_at), oldest first
        self._placements = 0

    def owned(self, replica: ReplicaId) -> int:
        """Prefixes `replica` owns that still weigh on placement: young ones and recurring ones."""
        return self._owned.get(replica, 0)

    def record(self, root: int, replica: ReplicaId, placed: bool) -> None:
        """A request with this root was routed to `replica`. `placed`: no replica held any block of the
        prompt, so this decision placed the prefix and `replica` becomes its owner (again, if it had been
        evicted everywhere). A copy of a held prefix routed elsewhere keeps its first owner."""
        entry = self._roots.get(root)
        if entry is None:
            self._place(root, _Root(replica, 0, 0, False))
            entry = self._roots[root]
        else:
            self._roots.move_to_end(root)
            if placed and entry.replica != replica:
                self._uncount(entry)
                entry.replica = replica
                self._place(root, entry)
        entry.uses += 1
        if entry.uses >= 2 and not entry.counted:
            self._count(entry)
        self._age()

    def _place(self, root: int, entry: _Root) -> None:
        self._placements += 1
        entry.placed_at = self._placements
        if not entry.counted:
            self._count(entry)
        self._young.append((root, entry.placed_at))
        self._roots[root] = entry
        if len(self._roots) > self._capacity:
            _, oldest = self._roots.popitem(last=False)
            self._uncount(oldest)

    def _age(self) -> None:
        while self._young and self._placements - self._young[0][1] >= self._window:
            root, placed_at = self._young.popleft()
            entry = self._roots.get(root)
            if entry is not None and entry.placed_at == placed_at and entry.uses < 2:
                self._uncount(entry)  # never came back: no longer a reason to place elsewhere

    def _count(self, entry: _Root) -> None:
        entry.counted = True
        self._owned[entry.replica] = self._owned.get(entry.replica, 0) + 1

    def _uncount(self, entry: _Root) -> None:
        if not entry.counted:
            return
        entry.counted = False
        left = self._owned.get(entry.replica, 0) - 1
        if left > 0:
            self._owned[entry.replica] = left
        else:
            self._owned.pop(entry.replica, None)

    def forget_replica(self, replica: ReplicaId) -> None:
        """Its prefixes have no owner any more: the next request for each places it anew."""
        for root in [r for r, entry in self._roots.items() if entry.replica == replica]:
            del self._roots[root]
        self._owned.pop(replica, None)
