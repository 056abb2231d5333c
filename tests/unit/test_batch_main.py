"""`python -m cluster.batch` end to end in online mode against a local stub endpoint (no Ray, no engine):
errors file, shards, resume after a partial run, merged output, summary, and the `warmserve batch` wiring."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from cluster.batch import main
from cluster.batch_format import response_line
from cluster.batch_store import ShardStore
from cluster.cli import main as cli_main


class _Stub(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body["prompt"])
        payload = json.dumps({"choices": [{"text": body["prompt"].upper()}],
                              "usage": {"completion_tokens": 3}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-request-id", "cmpl-stub")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def endpoint() -> Iterator[str]:
    _Stub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _input(tmp_path: Path, count: int) -> Path:
    lines = [json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
                         "body": {"model": "smollm2-135m-instruct", "prompt": f"p{i}"}}) for i in range(count)]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines[:3] + ["{bad"] + lines[3:]) + "\n")
    return path


def test_online_run_resumes_a_partial_output_and_merges_every_custom_id_once(tmp_path: Path, endpoint: str,
                                                                            capsys: pytest.CaptureFixture[str]) -> None:
    source, output = _input(tmp_path, 10), tmp_path / "out" / "results.jsonl"
    # What a killed earlier run left: two committed requests.
    from cluster.batch_input import read_input

    store = ShardStore(output)
    output.parent.mkdir()
    store.open(source, read_input(source).sha256)
    store.commit([response_line("c1", 200, "old", {"usage": {"completion_tokens": 3}}),
                  response_line("c5", 200, "old", {"usage": {"completion_tokens": 3}})])
    store.close()  # that run ended

    code = main(["--mode", "online", "--endpoint", endpoint, "--input", str(source), "--output", str(output),
                 "--shard-size", "3", "--concurrency", "2"])
    assert code == 0
    assert sorted(_Stub.seen) == sorted(f"p{i}" for i in range(10) if i not in (1, 5))  # committed ones skipped
    lines = [json.loads(l) for l in output.read_text().splitlines()]
    assert [l["custom_id"] for l in lines] == [f"c{i}" for i in range(10)]
    assert lines[1]["response"]["request_id"] == "old" and lines[0]["response"]["request_id"] == "cmpl-stub"
    errors = [json.loads(l) for l in (tmp_path / "out" / "results.errors.jsonl").read_text().splitlines()]
    assert [(e["line"], e["error"]["code"]) for e in errors] == [(4, "invalid_json")]
    summary = json.loads((output.with_name("results.jsonl.shards") / "summary.json").read_text())
    assert (summary["requests"], summary["skipped_already_committed"], summary["completed_this_run"],
            summary["malformed_lines"], summary["completion_tokens_total"]) == (10, 2, 8, 1, 30)
    logs = capsys.readouterr().out
    assert "2 already committed" in logs and "committed: 3 rows" in logs and "[batch] summary" in logs


def test_bad_input_and_a_foreign_output_exit_2_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output = tmp_path / "results.jsonl"
    assert cli_main(["batch", "--mode", "online", "--input", str(tmp_path / "nope.jsonl"), "--output", str(output)]) == 2
    assert "no such input file" in capsys.readouterr().err
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("{}\n")
    second.write_text("[]\n")
    ShardStore(output).open(first, "0" * 64)
    earlier_errors = tmp_path / "results.errors.jsonl"
    earlier_errors.write_text("the first run's malformed lines\n")
    assert main(["--mode", "online", "--input", str(second), "--output", str(output)]) == 2
    assert "holds results of another input" in capsys.readouterr().err
    assert earlier_errors.read_text() == "the first run's malformed lines\n"  # a refused run writes nothing


def test_unknown_model_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _input(tmp_path, 1)
    assert main(["--model", "nope", "--input", str(source), "--output", str(tmp_path / "o.jsonl")]) == 2
    assert "no model 'nope' in the config" in capsys.readouterr().err
