"""`warmserve bench vision`: images/s and p50/p99 batch latency per vision backend and batch size.

    warmserve bench vision [--model resnet50] [--backends onnxruntime,torch] [--batch-sizes 1,8,32]
                           [--runs 3] [--threads 2] [--min-time-s 3] [--device cpu|cuda]
                           [--precision fp32|fp16] [--baseline torch] [--json]
    warmserve bench vision --http ...   (the served path end to end: cluster/bench_vision_http.py)

Engines only (no Serve, no HTTP): what each backend does with a full batch. The model is prepared into
the model cache first (deterministic random weights; the same FLOPs as trained ones). Prints a Markdown
table (medians over runs, ratio to the baseline within each run) or, with --json, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict

import numpy as np

from configs.vision_schema import VisionModelConfig
from engines.vision.bench import CellResult, measure, summarise
from engines.vision.select import make_vision_engine
from engines.vision.protocol import VisionEngine
from engines.vision.store import VisionArtifacts, load_artifacts, prepare_vision_model

USAGE_ERROR = 2
TORCH_NCHW = "torch-nchw"  # a comparison variant of the torch backend, not a config value


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1 or max(values) > 1024:
        raise argparse.ArgumentTypeError(f"batch sizes must be in [1, 1024], got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="warmserve bench vision", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["resnet50", "resnet18", "resnet-tiny"], default="resnet50")
    parser.add_argument("--backends", default="onnxruntime,torch",
                        help="comma-separated: onnxruntime, torch, tensorrt, torch-nchw (PyTorch with "
                             "contiguous NCHW activations, what torch ran before channels-last on CUDA) "
                             "(default: onnxruntime,torch)")
    parser.add_argument("--batch-sizes", type=_int_list, default=[1, 8, 32])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads (default: the library's)")
    parser.add_argument("--min-time-s", type=float, default=3.0)
    parser.add_argument("--min-iters", type=int, default=3)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "fp16"], default="fp32")
    parser.add_argument("--baseline", default="torch", help="backend the ratios are against (default: torch)")
    parser.add_argument("--json", action="store_true")
    return parser


def _config(args: argparse.Namespace, backend: str) -> VisionModelConfig:
    gpu = args.device == "cuda"
    return VisionModelConfig.model_validate({
        "name": f"bench-{args.model}", "model": args.model, "num_gpus": 1 if gpu else 0,
        "max_ongoing_requests": max(64, max(args.batch_sizes)),
        "engine": {"backend": backend, "precision": args.precision, "num_threads": args.threads},
        "batching": {"max_batch_size": max(args.batch_sizes)}})


def _engine(backend: str, config: VisionModelConfig, artifacts: VisionArtifacts) -> VisionEngine:
    if backend != TORCH_NCHW:
        return make_vision_engine(config, artifacts)
    from engines.vision.torch_backend import TorchVisionEngine

    return TorchVisionEngine(artifacts, config.batching.max_batch_size, "cuda" if config.num_gpus else "cpu",
                             config.engine.precision, config.engine.num_threads, channels_last=False)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--http"]:  # the whole served path instead of engines alone
        from cluster.bench_vision_http import main as bench_http

        return bench_http(argv[1:])
    args = build_parser().parse_args(argv)
    backends = [b for b in args.backends.split(",") if b]
    unknown = sorted(set(backends) - {"onnxruntime", "torch", "tensorrt", TORCH_NCHW})
    if unknown or args.runs < 1 or args.min_iters < 1 or args.min_time_s < 0:
        print(f"bad arguments: unknown backends {unknown}" if unknown else "runs/min-iters must be >= 1",
              file=sys.stderr)
        return USAGE_ERROR
    configs = {b: _config(args, "torch" if b == TORCH_NCHW else b) for b in backends}
    artifacts = load_artifacts(prepare_vision_model(configs[backends[0]]))
    engines = {b: _engine(b, configs[b], artifacts) for b in backends}
    image = np.random.default_rng(0).standard_normal((3, 224, 224)).astype(np.float32)
    runs: list[list[CellResult]] = []
    for run in range(args.runs):
        cells = []
        order = backends if run % 2 == 0 else backends[::-1]  # alternate who goes first
        for batch_size in args.batch_sizes:
            batch = np.repeat(image[None], batch_size, axis=0)
            for backend in order:
                cells.append(measure(engines[backend], batch, args.min_iters, args.min_time_s, label=backend))
                print(f"[bench vision] run {run + 1}/{args.runs} {backend} batch {batch_size}: "
                      f"{cells[-1].images_per_s:.1f} images/s", file=sys.stderr, flush=True)
        runs.append(cells)
    summary = summarise(runs, args.baseline)
    if args.json:
        print(json.dumps({"model": args.model, "device": args.device, "precision": args.precision,
                          "threads": args.threads, "machine": platform.processor() or platform.machine(),
                          "summary": [asdict(s) for s in summary], "runs": [[asdict(c) for c in r] for r in runs]}))
        return 0
    print(f"{args.model}, {args.device}, {args.precision}, threads={args.threads or 'default'}, "
          f"medians of {args.runs} runs; ratio = images/s / {args.baseline} images/s in the same run")
    print("| backend | batch | images/s | p50 ms | p99 ms | ratio |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        ratio = "-" if s.ratio_to_baseline is None else f"{s.ratio_to_baseline:.2f}x"
        print(f"| {s.backend} | {s.batch_size} | {s.images_per_s:.1f} | {s.p50_ms:.1f} | {s.p99_ms:.1f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
