from __future__ import annotations

from pathlib import Path

import pytest

from engines.model_store.store import BUILDERS, ModelStore, UnknownModelError, check_reference


def test_known_names() -> None:
    assert set(BUILDERS) == {"smollm2-135m-instruct", "smollm2-135m-instruct-tp-ready",
                             "smollm2-135m-instruct-tp8-ready", "tiny-random-llama"}
    for name in BUILDERS:
        check_reference(name)


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="smollm2-135m-instruct") as caught:
        check_reference("gpt-17")
    assert "tiny-random-llama" in str(caught.value)


def test_local_directory_must_hold_a_model(tmp_path: Path) -> None:
    with pytest.raises(UnknownModelError, match="not a directory"):
        check_reference(str(tmp_path / "absent"))
    with pytest.raises(UnknownModelError, match="config.json"):
        check_reference(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"")
    check_reference(str(tmp_path))
    assert ModelStore(tmp_path / "cache").resolve(str(tmp_path)) == tmp_path.resolve()


def test_builds_tiny_model_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ModelStore(tmp_path)
    path = store.resolve("tiny-random-llama")
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    calls = []
    monkeypatch.setitem(BUILDERS, "tiny-random-llama", lambda target: calls.append(target))
    assert store.resolve("tiny-random-llama") == path
    assert calls == []  # prepared already: not rebuilt


def test_head_padding_counts() -> None:
    from engines.model_store.head_padding import padded_head_counts

    assert padded_head_counts(9, 3, 2) == (12, 4)
    assert padded_head_counts(9, 3, 4) == (12, 4)
    assert padded_head_counts(8, 8, 2) == (8, 8)
    assert padded_head_counts(9, 3, 8) == (24, 8)  # SmolLM2 for TP=8 (the gpu-multinode profile)


@pytest.mark.parametrize(("multiple", "heads"), [(4, 4), (8, 8)])  # TP-ready for 2/4 and for 8 workers
def test_head_padding_keeps_the_function(tmp_path: Path, multiple: int, heads: int) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from engines.model_store.head_padding import pad_checkpoint

    base = ModelStore(tmp_path).resolve("tiny-random-llama")
    padded = tmp_path / "padded"
    padded.mkdir()
    pad_checkpoint(base, padded, multiple=multiple)
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        before = AutoModelForCausalLM.from_pretrained(base)(ids).logits
        model = AutoModelForCausalLM.from_pretrained(padded)
        after = model(ids).logits
    assert model.config.num_attention_heads == heads and model.config.num_key_value_heads == heads
    torch.testing.assert_close(after, before, rtol=0, atol=1e-5)
