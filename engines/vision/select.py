"""Backend choice (`engine.backend`, with `auto`) and construction of the engine a replica holds."""

from __future__ import annotations

from pathlib import Path

from configs.vision_schema import VisionModelConfig
from engines.vision.protocol import VisionEngine
from engines.vision.store import INPUT_NAME, VisionArtifacts


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def onnxruntime_has_cuda() -> bool:
    try:
        import onnxruntime
    except ImportError:
        return False
    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def resolve_backend(requested: str, has_gpu: bool, has_tensorrt: bool, onnxruntime_cuda: bool = False) -> str:
    """`auto` = TensorRT when the replica has a GPU and `tensorrt` imports; on a GPU without TensorRT,
    ONNX Runtime if it has its CUDA provider, else PyTorch on the GPU (a CPU-only ONNX Runtime would leave
    the GPU idle: found on an H200 whose image has CUDA torch and a CPU-only onnxruntime); without a GPU,
    ONNX Runtime. An explicit `tensorrt` without a GPU or the package raises ValueError saying which is
    missing (never a silent fallback)."""
    if requested == "auto":
        if not has_gpu:
            return "onnxruntime"
        if has_tensorrt:
            return "tensorrt"
        return "onnxruntime" if onnxruntime_cuda else "torch"
    if requested == "tensorrt" and not (has_gpu and has_tensorrt):
        missing = [what for what, ok in (("a CUDA GPU", has_gpu), ("the tensorrt package", has_tensorrt)) if not ok]
        raise ValueError(f"engine.backend='tensorrt' needs {' and '.join(missing)}")
    return requested


def make_vision_engine(config: VisionModelConfig, artifacts: VisionArtifacts) -> VisionEngine:
    """Called once per replica. GPU use needs both `num_gpus > 0` (Ray gave the replica a GPU) and CUDA."""
    from engines.vision.tensorrt_backend import tensorrt_available

    engine_cfg = config.engine
    has_gpu = config.num_gpus > 0 and cuda_available()
    backend = resolve_backend(engine_cfg.backend, has_gpu, has_gpu and tensorrt_available(),
                              has_gpu and onnxruntime_has_cuda())
    max_batch = config.batching.max_batch_size
    if backend == "tensorrt":
        from engines.vision.tensorrt_backend import TensorRTVisionEngine

        cache_dir = Path(engine_cfg.tensorrt_cache_dir).expanduser() if engine_cfg.tensorrt_cache_dir \
            else artifacts.directory / "tensorrt"
        return TensorRTVisionEngine(artifacts.onnx_path(engine_cfg.precision), INPUT_NAME, max_batch,
                                    artifacts.image_size, engine_cfg.precision, cache_dir,
                                    engine_cfg.tensorrt_workspace_gb)
    if backend == "onnxruntime":
        from engines.vision.onnxruntime_backend import OnnxRuntimeVisionEngine

        return OnnxRuntimeVisionEngine(str(artifacts.onnx_path(engine_cfg.precision)), max_batch,
                                       engine_cfg.num_threads, use_cuda=has_gpu)
    from engines.vision.torch_backend import TorchVisionEngine

    return TorchVisionEngine(artifacts, max_batch, "cuda" if has_gpu else "cpu", engine_cfg.precision,
                             engine_cfg.num_threads)
