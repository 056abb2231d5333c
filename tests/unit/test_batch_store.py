"""The shard store: atomic commits, resume after a kill at any point, exactly-once merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cluster.batch_format import response_line
from cluster.batch_input import BatchLine
from cluster.batch_plan import cut_shards, pending_lines, prefix_sorted
from cluster.batch_store import ShardStore, StoreError, default_errors_path


def _records(*ids: str) -> list[dict]:
    return [response_line(cid, 200, "r", {"usage": {"completion_tokens": 1}}) for cid in ids]


def _open(tmp_path: Path, sha: str = "abc") -> ShardStore:
    store = ShardStore(tmp_path / "out.jsonl")
    store.open(tmp_path / "in.jsonl", sha)
    return store


def test_commit_writes_whole_shards_and_a_new_store_resumes_from_them(tmp_path: Path) -> None:
    store = _open(tmp_path)
    assert store.commit(_records("a", "b")) == "shard-000001.jsonl"
    assert store.commit(_records("c")) == "shard-000002.jsonl"
    manifest = json.loads((store.directory / "manifest.json").read_text())
    assert manifest["committed_rows"] == 3 and manifest["shards"] == {"shard-000001.jsonl": 2, "shard-000002.jsonl": 1}

    store.close()
    resumed = _open(tmp_path)
    assert set(resumed.committed) == {"a", "b", "c"}
    assert resumed.next_shard_number() == 3


def test_a_commit_killed_before_its_rename_leaves_nothing_committed(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit(_records("a"))
    # What a kill between write and rename leaves behind: a complete or partial temp file.
    (store.directory / "shard-000002.jsonl.tmp").write_text(json.dumps(_records("b")[0])[:20])
    store.close()
    resumed = _open(tmp_path)
    assert set(resumed.committed) == {"a"}
    assert not list(resumed.directory.glob("*.tmp"))


def test_records_already_committed_are_dropped_so_a_redelivered_shard_adds_nothing(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit(_records("a", "b"))
    assert store.commit(_records("b", "c", "c")) == "shard-000002.jsonl"
    assert store.shard_rows["shard-000002.jsonl"] == 1 and store.duplicates_dropped == 2
    assert store.commit(_records("a")) is None


def test_merge_writes_every_custom_id_once_in_input_order(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit(_records("c", "a"))
    store.commit(_records("b"))
    assert store.merge({"a": 1, "b": 2, "c": 3}) == 3
    lines = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [l["custom_id"] for l in lines] == ["a", "b", "c"]
    assert json.loads((store.directory / "manifest.json").read_text())["complete"] is True


def test_merge_refuses_while_requests_are_missing(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit(_records("a"))
    with pytest.raises(StoreError, match="1 requests have no committed result"):
        store.merge({"a": 1, "b": 2})
    assert not (tmp_path / "out.jsonl").exists()


def test_shards_of_another_input_are_refused(tmp_path: Path) -> None:
    first = _open(tmp_path, sha="one")
    first.commit(_records("a"))
    first.close()
    with pytest.raises(StoreError, match="holds results of another input"):
        _open(tmp_path, sha="two")


def test_a_damaged_committed_shard_is_an_error_not_silently_redone(tmp_path: Path) -> None:
    store = _open(tmp_path)
    store.commit(_records("a"))
    (store.directory / "shard-000001.jsonl").write_text("{truncated\n")
    store.close()
    with pytest.raises(StoreError, match="shard-000001.jsonl:1: damaged"):
        _open(tmp_path)


def test_a_second_run_on_the_same_output_is_refused_while_the_first_holds_it(tmp_path: Path) -> None:
    first = _open(tmp_path)
    with pytest.raises(StoreError, match="another batch run .pid \\d+. is writing into"):
        _open(tmp_path)
    first.close()
    _open(tmp_path).close()  # free again once the first run ends


def test_resuming_with_another_model_or_config_is_refused(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "out.jsonl")
    store.open(tmp_path / "in.jsonl", "abc", {"model": "m1", "model_config_sha256": "aa"})
    store.commit(_records("a"))
    store.close()
    again = ShardStore(tmp_path / "out.jsonl")
    with pytest.raises(StoreError, match="another model and model_config_sha256"):
        again.open(tmp_path / "in.jsonl", "abc", {"model": "m2", "model_config_sha256": "bb"})
    again.close()
    same = ShardStore(tmp_path / "out.jsonl")
    same.open(tmp_path / "in.jsonl", "abc", {"model": "m1", "model_config_sha256": "aa"})
    assert set(same.committed) == {"a"}


def test_errors_file_sits_beside_the_output() -> None:
    assert default_errors_path(Path("/d/results.jsonl")) == Path("/d/results.errors.jsonl")


def test_resume_plan_runs_only_uncommitted_lines_prefix_sorted() -> None:
    lines = [BatchLine(i + 1, f"id{i}", "/v1/completions", {}) for i in range(5)]
    pending = pending_lines(lines, {"id1": {}, "id3": {}})
    assert [l.custom_id for l in pending] == ["id0", "id2", "id4"]
    prompts = {"id0": [5, 1], "id2": [1, 2, 3], "id4": [1, 2]}
    ordered = prefix_sorted(pending, lambda l: prompts[l.custom_id])
    assert [l.custom_id for l in ordered] == ["id4", "id2", "id0"]  # [1,2] and [1,2,3] share a prefix
    assert [len(s) for s in cut_shards(ordered, 2)] == [2, 1]
    with pytest.raises(ValueError):
        cut_shards(ordered, 0)
