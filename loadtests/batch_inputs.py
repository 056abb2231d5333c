"""Deterministic OpenAI batch input files for the batch job's tests and benchmark.

Four of five lines are chat requests from the shared-prefix workload (groups of requests sharing a long
system prompt, interleaved so that input order scatters each group), one of five a /v1/completions
request, all greedy. Same seed, same file, byte for byte.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from loadtests.chat_bench import QUESTIONS, TOPICS
from loadtests.shared_prefix_workload import build_workload

MODEL = "smollm2-135m-instruct"


def batch_lines(count: int, max_tokens: int, seed: int = 0, ignore_eos: bool = False, groups: int = 8,
                sentences: int = 6, model: str = MODEL) -> list[dict[str, Any]]:
    """`count` well-formed batch input lines with custom_ids `req-00000`..."""
    rng = random.Random(seed)
    chats = build_workload(groups, -(-count // groups), seed, sentences=sentences)
    lines = []
    for index in range(count):
        if index % 5 == 4:
            url = "/v1/completions"
            prompt = f"{rng.choice(QUESTIONS).format(t=rng.choice(TOPICS))} Answer:"
            body: dict[str, Any] = {"model": model, "prompt": prompt}
        else:
            url = "/v1/chat/completions"
            body = {"model": model, "messages": chats[index]}
        body.update(max_tokens=max_tokens, temperature=0)
        if ignore_eos:
            body["ignore_eos"] = True
        lines.append({"custom_id": f"req-{index:05d}", "method": "POST", "url": url, "body": body})
    return lines


def write_jsonl(path: Path, lines: list[dict[str, Any]], raw_extra: list[str] = ()) -> Path:
    """Write `lines` as JSONL, then `raw_extra` verbatim (e.g. malformed lines for tests)."""
    text = "".join(json.dumps(line) + "\n" for line in lines) + "".join(extra + "\n" for extra in raw_extra)
    path.write_text(text)
    return path


def write_parquet(path: Path, lines: list[dict[str, Any]]) -> Path:
    """The recommended Parquet layout: custom_id, method, url columns and the body as a JSON string."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "custom_id": [line["custom_id"] for line in lines],
        "method": [line["method"] for line in lines],
        "url": [line["url"] for line in lines],
        "body": [json.dumps(line["body"]) for line in lines],
    })
    pq.write_table(table, path)
    return path
