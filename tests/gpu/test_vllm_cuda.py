"""The CUDA engine path: runs only where a GPU and the CUDA vLLM build are present (never in CI here)."""

from __future__ import annotations

import asyncio

import pytest

torch = pytest.importorskip("torch")
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("quantization", [None, "fp8"])
def test_vllm_engine_on_gpu_answers_paris(quantization: str | None) -> None:
    """Full precision, and the FP8 variant a quantized version (`<model>@fp8`) would run."""
    pytest.importorskip("vllm")  # a GPU machine without the CUDA vLLM build skips instead of erroring
    from configs.loader import load_config
    from engines.model_store.store import ModelStore
    from engines.tokenizer import PromptTokenizer
    from engines.types import GenerationRequest, SamplingSpec
    from engines.vllm_engine import VLLMEngine

    model = load_config("gpu-single").models[0]
    model = model.model_copy(update={"engine": model.engine.model_copy(update={"quantization": quantization})})
    path = ModelStore().resolve(model.model)
    prompt = PromptTokenizer(path).encode_chat([{"role": "user", "content": "What is the capital of France?"}])

    async def run() -> str:
        engine = VLLMEngine(path, model.engine, model.placement, kv_events=None)
        await engine.start()
        try:
            request = GenerationRequest("gpu-1", prompt, SamplingSpec(max_tokens=32, temperature=0))
            return "".join([chunk.text async for chunk in engine.generate(request)])
        finally:
            await engine.shutdown()

    assert "Paris" in asyncio.run(run())
