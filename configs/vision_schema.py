"""The typed schema of one served vision model: which network, which backend, how it batches.

Part of `ClusterConfig.vision_models`; validated at load like the LLM models, so an impossible combination
(TensorRT without a GPU, FP16 on a CPU) fails with the model's name before anything starts.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from configs.base import StrictModel
from configs.model_versions import VISION_NAME_PATTERN, check_weight_on_version

# The networks engines.vision.resnet defines (a unit test keeps the two lists equal; configs cannot import
# engines).
VisionArchitecture = Literal["resnet50", "resnet18", "resnet-tiny"]
VisionBackend = Literal["auto", "tensorrt", "onnxruntime", "torch"]
VisionPrecision = Literal["fp32", "fp16"]


class VisionEngineConfig(StrictModel):
    """How a replica runs the network. `auto` picks TensorRT when the replica has a GPU and `tensorrt`
    imports; on a GPU without it, ONNX Runtime's CUDA provider or else PyTorch on the GPU; without a GPU,
    ONNX Runtime (engines.vision.select)."""

    backend: VisionBackend = "auto"
    # TensorRT builds strongly typed networks, so the precision is the ONNX file's: fp16 exports an FP16
    # ONNX. FP16 needs a GPU (checked below); on CPU it is slower than fp32, not faster.
    precision: VisionPrecision = "fp32"
    # Threads one inference may use (ONNX Runtime intra-op, torch.set_num_threads); None = the library's.
    num_threads: int | None = Field(default=None, ge=1, le=512)
    # TensorRT builder workspace (scratch GPU memory for tactics).
    tensorrt_workspace_gb: float = Field(default=4.0, gt=0, le=1024)
    # Fault injection: the fraction of requests the replica fails at once (drills, a bad version for a
    # rollout to roll back; deployments/vision_replica.py). 0 in production.
    injected_error_rate: float = Field(default=0.0, ge=0, le=1)
    # Where built TensorRT engines are kept; None = a `tensorrt/` folder beside the model's ONNX file.
    tensorrt_cache_dir: str | None = Field(default=None, min_length=1, max_length=4096)


class VisionBatchingConfig(StrictModel):
    """Serve's dynamic batching (`@serve.batch`) in each replica: images, not requests, fill a batch."""

    max_batch_size: int = Field(default=8, ge=1, le=1024)
    # How long the first image of a batch waits for company; the latency bought for throughput.
    batch_wait_timeout_s: float = Field(default=0.01, ge=0, le=10)


class VisionModelConfig(StrictModel):
    """One served image classifier: network, optional local weights, replicas, backend, batching."""

    # `<model>` or `<model>@<version>` (e.g. `resnet@fp16`, a TensorRT FP16 variant canaried against FP32).
    name: str = Field(min_length=1, max_length=128, pattern=VISION_NAME_PATTERN)
    # An architecture the project defines (engines.vision.resnet): resnet50, resnet18, resnet-tiny.
    model: VisionArchitecture
    # A local state dict (.safetensors, .pt or .pth, torchvision's key names). None = deterministic random
    # weights from `seed`. Nothing is ever downloaded. A labels.txt beside the file names the classes.
    weights: str | None = Field(default=None, min_length=1, max_length=4096)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)
    num_classes: int = Field(default=1000, ge=2, le=100_000)
    image_size: int = Field(default=224, ge=32, le=1024)
    # Images are resized so the shorter side is this long, then center-cropped to image_size.
    resize_size: int = Field(default=256, ge=32, le=2048)
    top_k_default: int = Field(default=5, ge=1, le=1000)
    # Largest encoded image the API accepts; bigger bodies get a 400 before decoding.
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024, le=1024**3)
    # Largest decoded image (width x height), checked from its header before decompression: a small PNG
    # can claim gigapixels (a decompression bomb). 64 MP covers any real photo.
    max_image_pixels: int = Field(default=64_000_000, ge=1024, le=1_000_000_000)
    num_replicas: int = Field(default=1, ge=1, le=1024)
    replica_num_cpus: float = Field(default=1.0, ge=0, le=256)
    # GPU share of each replica; fractions pack several replicas on one GPU. 0 = CPU only.
    num_gpus: float = Field(default=0.0, ge=0, le=8)
    max_ongoing_requests: int = Field(default=64, ge=1, le=100_000)
    engine: VisionEngineConfig = VisionEngineConfig()
    batching: VisionBatchingConfig = VisionBatchingConfig()
    # A version's share of the requests for its bare model name (as for LLMs; configs/model_versions.py).
    traffic_weight: float = Field(default=1.0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _consistent(self) -> VisionModelConfig:
        check_weight_on_version(self.name, self.traffic_weight)
        if self.engine.backend == "tensorrt" and self.num_gpus == 0:
            raise ValueError(f"vision model {self.name!r}: engine.backend='tensorrt' needs num_gpus > 0")
        if self.engine.precision == "fp16" and self.num_gpus == 0:
            raise ValueError(f"vision model {self.name!r}: engine.precision='fp16' needs num_gpus > 0 "
                             "(FP16 kernels are slower than FP32 on CPUs)")
        if self.resize_size < self.image_size:
            raise ValueError(f"vision model {self.name!r}: resize_size ({self.resize_size}) must be >= "
                             f"image_size ({self.image_size}) for the center crop")
        if self.top_k_default > self.num_classes:
            raise ValueError(f"vision model {self.name!r}: top_k_default ({self.top_k_default}) exceeds "
                             f"num_classes ({self.num_classes})")
        if self.max_ongoing_requests < self.batching.max_batch_size:
            raise ValueError(f"vision model {self.name!r}: max_ongoing_requests ({self.max_ongoing_requests}) "
                             f"must be >= batching.max_batch_size ({self.batching.max_batch_size}), or batches "
                             "of single-image requests can never fill")
        return self
