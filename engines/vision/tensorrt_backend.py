"""TensorRT backend (GPU): an engine built from the ONNX file with one optimisation profile for batch
1..max, cached on disk (engines.vision.trt_cache), run with one execution context on its own stream.

Written against the TensorRT 10.x/11.x Python API. The network is strongly typed (the default and only mode
in 11.x; the flag is set explicitly for 10.x), so precision comes from the ONNX file: FP16 from the FP16
export, INT8 from Q/DQ nodes, never from builder flags (removed in 11.x). Device buffers are torch CUDA
tensors, so no CUDA Python binding is needed beside the torch that the GPU stack already has.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from engines.vision.store import file_sha256
from engines.vision.trt_cache import EngineCache, EngineCacheKey, ProfileShapes, batch_profile

logger = logging.getLogger("warmserve.vision.tensorrt")


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def compute_capability(device_index: int = 0) -> str:
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return f"{major}.{minor}"


def _network_flags(trt: Any) -> int:
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if strongly_typed is None else 1 << int(strongly_typed)


def build_serialized_engine(onnx_path: Path, profile: ProfileShapes, workspace_bytes: int) -> bytes:
    """Parse the ONNX file and build a serialized engine; raises RuntimeError with the parser's errors."""
    import tensorrt as trt

    trt_logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(trt_logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, trt_logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimisation = builder.create_optimization_profile()
    optimisation.set_shape(profile.input_name, profile.shape(profile.min_batch), profile.shape(profile.opt_batch),
                           profile.shape(profile.max_batch))
    config.add_optimization_profile(optimisation)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above)")
    return bytes(memoryview(serialized))


class TensorRTVisionEngine:
    backend = "tensorrt"

    def __init__(self, onnx_path: Path, input_name: str, max_batch_size: int, image_size: int, precision: str,
                 cache_dir: Path, workspace_gb: float, device_index: int = 0) -> None:
        import tensorrt as trt
        import torch

        self._torch = torch
        self._device = torch.device("cuda", device_index)
        torch.cuda.set_device(self._device)
        self.max_batch_size = max_batch_size
        profile = batch_profile(input_name, max_batch_size, image_size)
        key = EngineCacheKey(file_sha256(onnx_path), trt.__version__, compute_capability(device_index),
                             precision, profile)
        cache = EngineCache(cache_dir)
        started = time.monotonic()
        with cache.lock(key):
            serialized = cache.load(key)
            if serialized is None:
                logger.info("building TensorRT engine %s (no cached engine)", key.file_name())
                serialized = build_serialized_engine(onnx_path, profile, int(workspace_gb * (1 << 30)))
                cache.store(key, serialized)
            else:
                logger.info("loading cached TensorRT engine %s", cache.path_for(key))
        self.engine_path = cache.path_for(key)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(serialized)
        if self._engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {self.engine_path}")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(self._device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise RuntimeError(f"expected one input and one output, got {inputs} and {outputs}")
        self._input, self._output = inputs[0], outputs[0]
        self._input_dtype = _torch_dtype(trt, torch, self._engine.get_tensor_dtype(self._input))
        self._output_dtype = _torch_dtype(trt, torch, self._engine.get_tensor_dtype(self._output))
        self.load_s = time.monotonic() - started

    def infer(self, images: np.ndarray) -> np.ndarray:
        torch = self._torch
        batch = images.shape[0]
        if not 1 <= batch <= self.max_batch_size:
            raise ValueError(f"batch {batch} is outside the engine's profile 1..{self.max_batch_size}")
        with torch.cuda.stream(self._stream):
            source = torch.from_numpy(np.ascontiguousarray(images)).pin_memory()
            device_input = source.to(self._device, non_blocking=True).to(self._input_dtype).contiguous()
            if not self._context.set_input_shape(self._input, tuple(device_input.shape)):
                raise RuntimeError(f"TensorRT rejected input shape {tuple(device_input.shape)}")
            output_shape = tuple(self._context.get_tensor_shape(self._output))
            device_output = torch.empty(output_shape, dtype=self._output_dtype, device=self._device)
            self._context.set_tensor_address(self._input, device_input.data_ptr())
            self._context.set_tensor_address(self._output, device_output.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            result = device_output.float().cpu()  # synchronises the stream
        return result.numpy()


def _torch_dtype(trt: Any, torch: Any, dtype: Any) -> Any:
    mapping = {trt.float32: torch.float32, trt.float16: torch.float16}
    if dtype not in mapping:
        raise RuntimeError(f"unsupported TensorRT I/O dtype {dtype}")
    return mapping[dtype]
