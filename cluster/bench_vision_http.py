"""`warmserve bench vision --http`: the whole vision path (HTTP, ingress, Serve's dynamic batching,
replica) on a fresh local Ray, once per `max_batch_size` in `--max-batch-sizes`, under the same closed-loop
load (loadtests/vision_bench.py). Shows what dynamic batching buys end to end on the host it runs on.

    warmserve bench vision --http [--model resnet18] [--max-batch-sizes 1,8] [--concurrency 8]
                                  [--requests 96] [--threads 2] [--wait-ms 5] [--port 8300]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="warmserve bench vision --http")
    parser.add_argument("--model", choices=["resnet50", "resnet18", "resnet-tiny"], default="resnet18")
    parser.add_argument("--max-batch-sizes", default="1,8")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=96)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--wait-ms", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8300)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.max_batch_sizes.split(",") if s]

    import os

    from cluster.serve_environment import serve_environment
    from configs.schema import ClusterConfig, HttpConfig, RayConfig

    os.environ.update(serve_environment(RayConfig(), HttpConfig()))
    import ray
    from ray import serve

    from deployments.app_builder import build_app
    from loadtests.vision_bench import run_load

    ray.init(address="local", num_cpus=16, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    rows = []
    try:
        for size in sizes:
            config = ClusterConfig.model_validate({"http": {"port": args.port}, "vision_models": [{
                "name": args.model, "model": args.model, "max_ongoing_requests": max(64, size),
                "engine": {"backend": "onnxruntime", "num_threads": args.threads},
                "batching": {"max_batch_size": size, "batch_wait_timeout_s": args.wait_ms / 1000}}]})
            serve.run(build_app(config, {}), name="vision-bench", route_prefix="/")
            time.sleep(2)
            result = run_load(f"http://127.0.0.1:{args.port}", args.model, args.concurrency, args.requests)
            rows.append({"max_batch_size": size, **asdict(result)})
            print(f"[bench vision --http] max_batch_size {size}: {result.images_per_s:.1f} images/s, "
                  f"p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms, failed {result.failed}",
                  file=sys.stderr, flush=True)
            serve.delete("vision-bench")
    finally:
        serve.shutdown()
        ray.shutdown()
    print(json.dumps({"model": args.model, "concurrency": args.concurrency, "threads": args.threads,
                      "wait_ms": args.wait_ms, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
