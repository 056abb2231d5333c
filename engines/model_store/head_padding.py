"""A tensor-parallel-ready copy of a Llama checkpoint whose head counts do not divide by the TP size.

SmolLM2-135M has 9 query heads over 3 KV heads, so vLLM refuses tensor_parallel_size=2. This adds whole
GQA groups of zero heads (here 3 query heads over 1 new KV head: 12 over 4) whose output projection
columns are zero. A zero head contributes exactly nothing to the residual stream, so the padded model
computes the same function, now splittable over 2 (or 4) workers, at the cost of 1/3 more attention work.
"""

from __future__ import annotations

import json
from pathlib import Path

def padded_head_counts(num_heads: int, num_kv_heads: int, multiple: int) -> tuple[int, int]:
    """Smallest (query heads, KV heads), adding whole groups, with KV heads a multiple of `multiple`."""
    group = num_heads // num_kv_heads
    kv = num_kv_heads
    while kv % multiple:
        kv += 1
    return kv * group, kv


def pad_checkpoint(source: Path, target: Path, multiple: int) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    config = json.loads((source / "config.json").read_text())
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    new_heads, new_kv = padded_head_counts(heads, kv_heads, multiple)
    extra_q, extra_kv = (new_heads - heads) * head_dim, (new_kv - kv_heads) * head_dim
    tensors = load_file(str(source / "model.safetensors"))
    for name, tensor in list(tensors.items()):
        if name.endswith("q_proj.weight"):
            tensors[name] = torch.cat([tensor, tensor.new_zeros(extra_q, tensor.shape[1])])
        elif name.endswith(("k_proj.weight", "v_proj.weight")):
            tensors[name] = torch.cat([tensor, tensor.new_zeros(extra_kv, tensor.shape[1])])
        elif name.endswith("o_proj.weight"):
            tensors[name] = torch.cat([tensor, tensor.new_zeros(tensor.shape[0], extra_q)], dim=1)
    save_file(tensors, str(target / "model.safetensors"), metadata={"format": "pt"})
    config.update(num_attention_heads=new_heads, num_key_value_heads=new_kv, head_dim=head_dim)
    (target / "config.json").write_text(json.dumps(config, indent=2))
    for item in source.iterdir():  # tokenizer, chat template, generation config: unchanged
        if item.is_file() and item.name not in ("config.json", "model.safetensors") and not item.name.startswith("."):
            (target / item.name).write_bytes(item.read_bytes())
