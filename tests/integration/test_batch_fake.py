"""The batch job on the session's Ray cluster with the fake engine: offline mode through real Ray Data
(actor pool, async engine actors, streamed shard commits) against online mode through the real Serve app
of the same profile; and a resumed offline run. Seconds, where the e2e test (real vLLM) takes minutes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cluster.batch import main
from cluster.batch_format import response_line
from cluster.batch_input import read_input
from cluster.batch_store import ShardStore
from loadtests.batch_inputs import batch_lines, write_jsonl
from tests.conftest import DeployedApp

pytestmark = pytest.mark.integration
REQUESTS = 40


def _answers(path: Path) -> dict[str, Any]:
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        body = record["response"]["body"]
        choice = body["choices"][0]
        out[record["custom_id"]] = (choice.get("message", {}).get("content", choice.get("text")),
                                    body["usage"]["prompt_tokens"], body["usage"]["completion_tokens"])
    return out


@pytest.fixture()
def requests_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", batch_lines(REQUESTS, 8, seed=1, groups=4, model="tiny-fake"))


def test_offline_on_ray_data_matches_online_through_serve(serve_instance: None, fake_app: DeployedApp,
                                                          requests_file: Path, tmp_path: Path) -> None:
    offline, online = tmp_path / "offline.jsonl", tmp_path / "online.jsonl"
    assert main(["--config", "test-fake", "--input", str(requests_file), "--output", str(offline),
                 "--shard-size", "6", "--replicas", "2", "--progress-interval-s", "5"]) == 0
    assert main(["--config", "test-fake", "--mode", "online", "--endpoint", fake_app.root_url,
                 "--input", str(requests_file), "--output", str(online), "--shard-size", "7"]) == 0
    offline_answers, online_answers = _answers(offline), _answers(online)
    assert list(offline_answers) == [f"req-{i:05d}" for i in range(REQUESTS)]
    assert offline_answers == online_answers
    summary = json.loads((tmp_path / "offline.jsonl.shards" / "summary.json").read_text())
    assert summary["completed_this_run"] == REQUESTS and summary["failed_requests"] == 0
    assert summary["generation_tokens_per_s"] > 0


def test_offline_resume_runs_only_what_is_not_committed(serve_instance: None, requests_file: Path,
                                                        tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    store = ShardStore(output)
    store.open(requests_file, read_input(requests_file).sha256)
    earlier = [response_line(f"req-{i:05d}", 200, "earlier", {"usage": {"completion_tokens": 1}}) for i in (0, 7, 9)]
    store.commit(earlier)
    store.close()  # that earlier run ended
    assert main(["--config", "test-fake", "--input", str(requests_file), "--output", str(output),
                 "--shard-size", "8"]) == 0
    lines = [json.loads(line) for line in output.read_text().splitlines()]
    assert [line["custom_id"] for line in lines] == [f"req-{i:05d}" for i in range(REQUESTS)]
    assert [line["response"]["request_id"] for line in lines if line["custom_id"] in ("req-00000", "req-00007")] == [
        "earlier", "earlier"]
    summary = json.loads((tmp_path / "out.jsonl.shards" / "summary.json").read_text())
    assert summary["skipped_already_committed"] == 3 and summary["completed_this_run"] == REQUESTS - 3


def test_offline_engine_death_is_retried_on_a_new_actor(serve_instance: None, requests_file: Path,
                                                        tmp_path: Path) -> None:
    """An engine that dies inside a live actor: the actor exits, Ray Data retries its shard on a new
    one, and the job finishes with every answer an undisturbed run gives."""
    from cluster.config_check import load_checked_config

    faults = tmp_path / "faults"
    faults.mkdir()
    raw = load_checked_config("test-fake").model_dump()
    raw["models"][0]["engine"]["fake_fault_dir"] = str(faults)
    config = tmp_path / "faulty.yaml"
    config.write_text(yaml.safe_dump(raw))
    expected, output = tmp_path / "expected.jsonl", tmp_path / "out.jsonl"
    assert main(["--config", str(config), "--input", str(requests_file), "--output", str(expected),
                 "--shard-size", "8", "--replicas", "1"]) == 0
    (faults / "local.json").write_text(json.dumps({"die_after_tokens": 2}))  # the next request's engine dies
    assert main(["--config", str(config), "--input", str(requests_file), "--output", str(output),
                 "--shard-size", "8", "--replicas", "1"]) == 0
    assert not (faults / "local.json").exists(), "the fault never fired"
    assert _answers(output) == _answers(expected)
