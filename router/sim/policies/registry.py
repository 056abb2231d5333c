"""Policy names for the CLI and the benchmark, in report order (warmserve's own first)."""

from __future__ import annotations

import functools

from router.sim.policies.dynamo import DynamoKV
from router.sim.policies.kv_aware import KVAwareSim
from router.sim.policies.llmd import LlmdScorers
from router.sim.policies.ray_prefix import RayPrefixAffinity
from router.sim.policies.sglang import SGLangCacheAware
from router.sim.policies.simple import PowerOfTwo, RoundRobin
from router.sim.policy_api import PolicyFactory

POLICIES: dict[str, PolicyFactory] = {
    "kv_aware": KVAwareSim,
    "round_robin": RoundRobin,
    "pow2": PowerOfTwo,
    "ray_prefix": RayPrefixAffinity,
    "sglang": SGLangCacheAware,
    "dynamo": DynamoKV,
    "llm_d": LlmdScorers,
}
BASELINES = [name for name in POLICIES if name != "kv_aware"]
DEFAULT_POLICIES = list(POLICIES)
# Ablations of warmserve's policy, by name only (not in the default list): the weight the app config used
# before the simulator (2) and the policy's old default (1); an adapter that never feeds KV events to the
# load tracker (pending prefill then counts until a request finishes); the new-prefix spread off or smaller.
ABLATIONS: dict[str, PolicyFactory] = {
    "kv_aware_w1": functools.partial(KVAwareSim, uncached_block_weight=1.0),
    "kv_aware_w2": functools.partial(KVAwareSim, uncached_block_weight=2.0),
    "kv_aware_no_drain": functools.partial(KVAwareSim, drain_with_events=False),
    # New prefixes placed by load alone (before router.prefix_owners), and with a smaller spread weight.
    "kv_aware_no_spread": functools.partial(KVAwareSim, new_prefix_spread_blocks=0.0),
    "kv_aware_spread64": functools.partial(KVAwareSim, new_prefix_spread_blocks=64.0),
}
POLICIES.update(ABLATIONS)


def parse_policies(text: str) -> list[str]:
    """"a,b,c" -> names; raises ValueError naming an unknown one and the choices."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError("--policies is empty")
    for name in names:
        if name not in POLICIES:
            raise ValueError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    return list(dict.fromkeys(names))
