"""One-image KServe v2 infer request bodies with the binary tensor extension, as `tritonclient` sends them:
a JSON header naming the input's shape and byte size, then the raw FP32 pixels. HTTP-free, so both the
vision benchmark (`loadtests.vision_bench`) and the Locust vision user (`loadtests.locustfile`) build the
same request."""

from __future__ import annotations

import json

import numpy as np

INPUT_NAME = "input"  # the input every warmserve vision model declares (GET /v2/models/{name})


def infer_body(image_size: int, seed: int = 0) -> tuple[bytes, dict[str, str]]:
    """The body and headers of one infer request: a seeded random (1, 3, size, size) image."""
    if not 1 <= image_size <= 8192:
        raise ValueError(f"image size must be in [1, 8192] pixels, got {image_size}")
    image = np.random.default_rng(seed).standard_normal((1, 3, image_size, image_size)).astype(np.float32)
    header = json.dumps({"inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": list(image.shape),
                                     "parameters": {"binary_data_size": image.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + image.tobytes(), {"Content-Type": "application/octet-stream",
                                      "Inference-Header-Content-Length": str(len(header))}


def image_size_of(metadata: dict[str, object]) -> int:
    """The square image size a model's KServe v2 metadata (`GET /v2/models/{name}`) declares for its input,
    shape [-1, 3, H, W]. Raises ValueError when the metadata has no such input."""
    inputs = metadata.get("inputs")
    if isinstance(inputs, list):
        for entry in inputs:
            shape = entry.get("shape") if isinstance(entry, dict) else None
            if (isinstance(shape, list) and len(shape) == 4 and all(isinstance(d, int) for d in shape)
                    and shape[2] == shape[3] > 0):
                return int(shape[3])
    raise ValueError(f"model metadata declares no [N, 3, H, H] image input: {json.dumps(metadata)[:300]}")
