"""Driver for the simulated multi-node tests: deploys fake engine replicas through real Ray Serve with the
placement options warmserve's app builder gives the LLM deployment, and reports where everything landed.

The fake replica does what vLLM does inside a real one: with the Ray executor (a replica spanning nodes)
it looks up its own placement group (`ray.util.get_current_placement_group()`, which Serve's replica
sees because Serve captures its children into the group) and starts one worker actor in every bundle
holding a GPU (here the custom resource standing in for one), each asking for one of them and no CPU,
as vllm/v1/executor/ray_executor.py does. With the `mp` executor the workers are processes of the
replica, so the replica's own node and resources are the answer.

Run as `python -m tests.integration.placement_probe ADDRESS SPEC_JSON` (see `main`); prints one line,
RESULT_PREFIX + JSON {model name: {"replica_node", "replica_resources", "workers": [{bundle, node_id, node_ip}]}}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import ray
from ray import serve
from ray.util.placement_group import get_current_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy


RESULT_PREFIX = "PLACEMENT_PROBE_RESULT "


class FakeEngineWorker:
    def where(self) -> dict[str, str]:
        return {"node_id": ray.get_runtime_context().get_node_id(), "node_ip": ray.util.get_node_ip_address()}


class FakeEngineReplica:
    """Stands in for `deployments.llm_replica.LLMReplica`; sync methods, so Serve runs them off its loop."""

    def __init__(self, gpu_resource: str) -> None:
        self._workers: list[tuple[int, Any]] = []
        group = get_current_placement_group()
        bundles = group.bundle_specs if group is not None else []
        for index, bundle in enumerate(bundles):
            if bundle.get(gpu_resource, 0):
                strategy = PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=index,
                                                            placement_group_capture_child_tasks=True)
                worker = ray.remote(FakeEngineWorker).options(num_cpus=0, resources={gpu_resource: 1.0},
                                                              scheduling_strategy=strategy).remote()
                self._workers.append((index, worker))

    def layout(self) -> dict[str, Any]:
        where = ray.get([worker.where.remote() for _, worker in self._workers], timeout=60)
        return {
            "replica_node": ray.get_runtime_context().get_node_id(),
            "replica_resources": ray.get_runtime_context().get_assigned_resources(),
            "workers": [{"bundle": index, **spot} for (index, _), spot in zip(self._workers, where)],
        }


def main(address: str, spec_json: str) -> None:
    """`spec_json`: {"models": [model configs], "gpu_resources": {model name: resource standing for a GPU}}."""
    from configs.loader import parse_config
    from deployments.app_builder import llm_deployment_name, replica_placement_options
    from engines.placement import replica_resources

    spec = json.loads(spec_json)
    config = parse_config({"models": spec["models"]})
    ray.init(address=address, namespace="warmserve-sim", log_to_driver=False)
    serve.start(proxy_location="Disabled")  # handles only: no HTTP port on this machine is touched
    out: dict[str, Any] = {}
    for model in config.models:
        gpu_resource = spec["gpu_resources"][model.name]
        options = replica_placement_options(replica_resources(model, gpu_resource))
        deployment = serve.deployment(FakeEngineReplica).options(
            name=llm_deployment_name(model.name), num_replicas=model.num_replicas, **options)
        handle = serve.run(deployment.bind(gpu_resource), name=model.name, route_prefix=None)
        out[model.name] = handle.layout.remote().result(timeout_s=120)
        serve.delete(model.name)  # frees its group before the next shape is placed
    serve.shutdown()
    # Ray may print its own log lines to stdout around ours; the prefix marks the result.
    print(RESULT_PREFIX + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
