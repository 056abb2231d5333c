"""A closed-loop streaming chat benchmark against any OpenAI-compatible endpoint (HTTP only).

`concurrency` workers send `requests` streaming chat completions with deterministic prompts (seeded) and
fixed `max_tokens` (EOS ignored so every system generates the same number of tokens), and measure per
request TTFT and end-to-end latency, plus output tokens/s over the whole run.

    python -m loadtests.chat_bench --base-url http://127.0.0.1:8000/v1 --model smollm2-135m-instruct
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from dataclasses import asdict, dataclass

import httpx

TOPICS = ["the ocean", "mountains", "a small town", "the history of bread", "rain", "libraries", "trains",
          "the moon", "gardens", "winter", "rivers", "music", "bicycles", "the desert", "coffee", "stars"]
QUESTIONS = ["Write two sentences about {t}.", "Describe {t} to a child.", "List three facts about {t}.",
             "What is interesting about {t}?", "Give a short poem about {t}."]


def build_prompts(count: int, seed: int) -> list[list[dict[str, str]]]:
    rng = random.Random(seed)
    return [[{"role": "user", "content": rng.choice(QUESTIONS).format(t=rng.choice(TOPICS))}]
            for _ in range(count)]


@dataclass(slots=True)
class RequestResult:
    ttft_s: float
    e2e_s: float
    output_tokens: int
    ok: bool
    error: str = ""
    prompt_tokens: int = 0
    cached_tokens: int = 0  # the engine's own prefix-cache hit for this prompt (usage.prompt_tokens_details)
    replica: str = ""  # x-warmserve-replica, where the server reports it


@dataclass(slots=True)
class RunSummary:
    requests: int
    failures: int
    duration_s: float
    output_tokens: int
    output_tokens_per_s: float
    ttft_p50_ms: float
    ttft_p90_ms: float
    e2e_p50_ms: float


async def _one(client: httpx.AsyncClient, url: str, model: str, messages: list[dict[str, str]],
               max_tokens: int) -> RequestResult:
    body = {"model": model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "ignore_eos": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    ttft = None
    usage: dict = {}
    try:
        async with client.stream("POST", url, json=body) as response:
            if response.status_code != 200:
                return RequestResult(0, 0, 0, False, f"HTTP {response.status_code}: {await response.aread()!r}")
            replica = response.headers.get("x-warmserve-replica", "")
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                event = json.loads(line[6:])
                if ttft is None and any(c.get("delta", {}).get("content") for c in event.get("choices", [])):
                    ttft = time.perf_counter() - start
                usage = event.get("usage") or usage
    except httpx.HTTPError as error:
        return RequestResult(0, 0, 0, False, repr(error))
    details = usage.get("prompt_tokens_details") or {}
    return RequestResult(ttft or 0.0, time.perf_counter() - start, usage.get("completion_tokens", 0),
                         ttft is not None, prompt_tokens=usage.get("prompt_tokens", 0),
                         cached_tokens=details.get("cached_tokens") or 0, replica=replica)


async def run_bench(base_url: str, model: str, requests: int, concurrency: int, max_tokens: int,
                    seed: int) -> RunSummary:
    results, duration = await run_prompts(base_url, model, build_prompts(requests, seed), concurrency, max_tokens)
    return summarize(results, duration)


async def run_prompts(base_url: str, model: str, prompts: list[list[dict[str, str]]], concurrency: int,
                      max_tokens: int) -> tuple[list[RequestResult], float]:
    """Send `prompts` in order over `concurrency` closed-loop workers; (per-request results, wall seconds)."""
    queue: asyncio.Queue[list[dict[str, str]]] = asyncio.Queue()
    for prompt in prompts:
        queue.put_nowait(prompt)
    results: list[RequestResult] = []
    url = base_url.rstrip("/") + "/chat/completions"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        async def worker() -> None:
            while not queue.empty():
                results.append(await _one(client, url, model, queue.get_nowait(), max_tokens))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        duration = time.perf_counter() - start
    return results, duration


def summarize(results: list[RequestResult], duration: float) -> RunSummary:
    good = [r for r in results if r.ok]
    ttfts = sorted(r.ttft_s * 1000 for r in good) or [0.0]
    tokens = sum(r.output_tokens for r in good)
    return RunSummary(
        requests=len(results), failures=len(results) - len(good), duration_s=duration, output_tokens=tokens,
        output_tokens_per_s=tokens / duration, ttft_p50_ms=statistics.median(ttfts),
        ttft_p90_ms=ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))],
        e2e_p50_ms=statistics.median([r.e2e_s * 1000 for r in good] or [0.0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = asyncio.run(run_bench(args.base_url, args.model, args.requests, args.concurrency, args.max_tokens,
                                    args.seed))
    print(json.dumps(asdict(summary), indent=2))


if __name__ == "__main__":
    main()
