"""PyTorch eager backend: the reference the other backends are checked against, and the baseline."""

from __future__ import annotations

import numpy as np

from engines.vision.store import VisionArtifacts


class TorchVisionEngine:
    backend = "torch"

    def __init__(self, artifacts: VisionArtifacts, max_batch_size: int, device: str = "cpu",
                 precision: str = "fp32", num_threads: int | None = None, channels_last: bool | None = None) -> None:
        """`channels_last` (default: on CUDA only) keeps weights and activations NHWC, the layout cuDNN's
        tensor-core convolutions work in, so no layout transposes run around each convolution."""
        import torch
        from safetensors.torch import load_file

        from engines.vision.resnet import build_resnet

        if num_threads is not None:
            torch.set_num_threads(num_threads)  # per process: each replica is its own process
        self.max_batch_size = max_batch_size
        self._torch = torch
        self._device = torch.device(device)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        model = build_resnet(artifacts.arch, artifacts.num_classes)
        model.load_state_dict(load_file(str(artifacts.weights_path)))
        if channels_last is None:
            channels_last = self._device.type == "cuda"
        self._memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self._model = model.to(self._device, self._dtype, memory_format=self._memory_format).eval()

    def infer(self, images: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(np.ascontiguousarray(images)).to(self._device, self._dtype,
                                                                      memory_format=self._memory_format)
            return self._model(batch).float().cpu().numpy()
