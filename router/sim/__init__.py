"""A discrete-event simulator of a cluster of LLM replicas behind a router, for comparing routing policies.

No Ray, no engine: `engine.SimEngine` models continuous batching step by step, `kv_cache.SimKVCache` a
replica's KV cache (fixed block capacity, prefix reuse by chained block hash, LRU eviction of unreferenced
blocks) that publishes the same KV events a vLLM engine does, and `simulator.simulate` replays a workload
against one policy. warmserve's own policy runs through the production modules (`router.kv_policy`,
`router.prefix_index`, `router.load_tracker`); the baselines in `policies/` are re-implementations of other
routers from their published descriptions. `bench.run_benchmark` ties it together for the CLI
(`warmserve bench router`).
"""
