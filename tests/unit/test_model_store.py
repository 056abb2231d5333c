from __future__ import annotations

from pathlib import Path

import pytest

from engines.model_store.store import BUILDERS, ModelStore, UnknownModelError, check_reference


def test_known_names() -> None:
    assert set(BUILDERS) == {"smollm2-135m-instruct", "tiny-random-llama"}
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
