"""Closed-loop HTTP load on a vision endpoint (HTTP only): `concurrency` clients, each sending one-image
KServe v2 infer requests (binary tensor extension, as tritonclient sends them) back to back, `requests`
in all. Reports images/s and per-request latency p50/p99.

    python -m loadtests.vision_bench --url http://127.0.0.1:8000 --model resnet50 --concurrency 8 --requests 64
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np

from loadtests.kserve_body import infer_body


@dataclass(slots=True, frozen=True)
class HttpLoadResult:
    concurrency: int
    requests: int
    failed: int
    images_per_s: float
    p50_ms: float
    p99_ms: float


def run_load(url: str, model: str, concurrency: int, requests: int, image_size: int = 224,
             timeout_s: float = 120.0) -> HttpLoadResult:
    """Called by `warmserve bench vision --http` and from the command line."""
    body, headers = infer_body(image_size)
    endpoint = f"{url.rstrip('/')}/v2/models/{model}/infer"

    def one(_: int) -> float | None:
        started = time.perf_counter()
        try:
            request = urllib.request.Request(endpoint, data=body, headers=headers)
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                response.read()
        except OSError:
            return None
        return time.perf_counter() - started

    one(0)  # warm-up: first request pays connection set-up and lazy initialisation
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        latencies = list(pool.map(one, range(requests)))
    elapsed = time.perf_counter() - started
    ok = [latency for latency in latencies if latency is not None]
    if not ok:
        return HttpLoadResult(concurrency, requests, requests, 0.0, float("nan"), float("nan"))
    return HttpLoadResult(concurrency, requests, requests - len(ok), len(ok) / elapsed,
                          float(np.percentile(ok, 50) * 1000), float(np.percentile(ok, 99) * 1000))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    print(json.dumps(asdict(run_load(args.url, args.model, args.concurrency, args.requests, args.image_size))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
