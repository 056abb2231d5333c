"""How long the ingress's event loop is held while a burst of long prompts is templated and tokenized:
inline on the loop (as the ingress once did) against on the model's tokenizer thread (as it does now).

The ingress's event loop also routes, streams tokens and answers /health, so its lag is the delay every
other request sees. A heartbeat task sleeps 1 ms at a time and records how late it wakes; a burst of chat
requests (each a long passage of the shipped book) is encoded with the real SmolLM2 tokenizer and chat
template through the ingress's own code (`chat_prompt_ids`, `TokenizerThread`). The two modes alternate,
run after run, and the medians over runs are printed.

    python -m loadtests.bench_ingress_loop [--requests 32] [--prompt-chars 24000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable

from deployments.openai_protocol import ChatCompletionRequest, parse_request
from deployments.prompt_encoding import chat_prompt_ids
from deployments.tokenizer_thread import TokenizerThread
from engines.tokenizer import PromptTokenizer
from loadtests.slo import percentile
from loadtests.text_source import BOOK_PATH, MODELS_DIR

MODES = ("inline", "thread")


async def _burst(mode: str, tokenizer: PromptTokenizer, bodies: list[ChatCompletionRequest],
                 thread: TokenizerThread) -> dict[str, float]:
    lags: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        while not done.is_set():
            start = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append(time.perf_counter() - start - 0.001)

    async def encode(body: ChatCompletionRequest) -> int:
        work: Callable[[], list[int]] = lambda: chat_prompt_ids(tokenizer, body)  # noqa: E731
        await asyncio.sleep(0)  # arrive as separate requests do, each its own task
        return len(await thread.run(work) if mode == "thread" else work())

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    start = time.perf_counter()
    tokens = await asyncio.gather(*(encode(body) for body in bodies))
    wall = time.perf_counter() - start
    done.set()
    await beat
    return {"wall_s": wall, "lag_p50_ms": 1000 * (percentile(lags, 50) or 0.0),
            "lag_p99_ms": 1000 * (percentile(lags, 99) or 0.0), "lag_max_ms": 1000 * max(lags),
            "prompt_tokens": float(sum(tokens) / len(tokens))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=str(MODELS_DIR / "smollm2-135m-instruct"))
    parser.add_argument("--requests", type=int, default=32, help="chat requests arriving together")
    parser.add_argument("--prompt-chars", type=int, default=24_000, help="characters of book text per prompt")
    parser.add_argument("--runs", type=int, default=5, help="runs per mode, alternating")
    args = parser.parse_args(argv)

    from pathlib import Path

    tokenizer = PromptTokenizer(Path(args.model_dir))
    book = BOOK_PATH.read_text(encoding="utf-8")
    step = max(1, (len(book) - args.prompt_chars) // args.requests)
    bodies = [parse_request(ChatCompletionRequest, {"model": "m", "messages": [
        {"role": "user", "content": book[i * step:i * step + args.prompt_chars]}]}) for i in range(args.requests)]
    thread = TokenizerThread("bench")
    results: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
    asyncio.run(_burst("inline", tokenizer, bodies[:2], thread))  # warm the tokenizer and the template
    for run in range(args.runs):
        for mode in MODES if run % 2 == 0 else MODES[::-1]:
            results[mode].append(asyncio.run(_burst(mode, tokenizer, bodies, thread)))
    thread.close()
    print(f"{args.requests} chat requests of ~{results['inline'][0]['prompt_tokens']:.0f} prompt tokens arriving "
          f"together, {args.runs} runs per mode (medians)")
    print("| mode | loop lag p50 | loop lag p99 | loop lag max | burst encoded in |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        med = {key: statistics.median(r[key] for r in results[mode]) for key in results[mode][0]}
        print(f"| {mode} | {med['lag_p50_ms']:.1f} ms | {med['lag_p99_ms']:.1f} ms | {med['lag_max_ms']:.0f} ms "
              f"| {med['wall_s']:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
