"""ONNX Runtime backend: the CPU default (and a GPU fallback with onnxruntime-gpu's CUDA provider)."""

from __future__ import annotations

import numpy as np

_NUMPY_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxRuntimeVisionEngine:
    backend = "onnxruntime"

    def __init__(self, onnx_path: str, max_batch_size: int, num_threads: int | None = None,
                 use_cuda: bool = False) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if num_threads is not None:
            options.intra_op_num_threads = num_threads
        # One batch at a time per replica: parallelism inside an operator, none between operators.
        options.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if use_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        self._session = ort.InferenceSession(onnx_path, options, providers=providers)
        model_input = self._session.get_inputs()[0]
        if model_input.type not in _NUMPY_TYPES:
            raise ValueError(f"{onnx_path}: unsupported input type {model_input.type}")
        self._input_name = model_input.name
        self._input_dtype = _NUMPY_TYPES[model_input.type]
        self._output_name = self._session.get_outputs()[0].name
        self.max_batch_size = max_batch_size
        self.providers = self._session.get_providers()

    def infer(self, images: np.ndarray) -> np.ndarray:
        feed = {self._input_name: np.ascontiguousarray(images, dtype=self._input_dtype)}
        (logits,) = self._session.run([self._output_name], feed)
        return np.asarray(logits, dtype=np.float32)
