"""Request bodies for the load-test user kinds, deterministic from (seed, user index, request index).

Locust-free and HTTP-free so tests can check them; `loadtests.locustfile` sends what these build.

- shared_prefix: `prefix_groups` system prompts of `prefix_tokens` tokens each (a group's prompt is the same
  for every user), followed by a fresh question of `question_tokens`: the KV-cache router's home ground.
- multi_turn: a conversation of `turns` user turns of `turn_tokens` each; every request resends the whole
  history including the assistant's earlier answers, so each turn's prompt extends the previous one.
- long_context: one user message of `long_context_tokens` (a document) plus a short instruction.
- completions: `/v1/completions` with a raw prompt of `completion_prompt_tokens`.
- vision: KServe v2 infer requests of one image each to `vision_model` (`/v2/models/{name}/infer`, binary
  tensors); the body comes from `loadtests.kserve_body`, sized by the model's own metadata.

All ask for exactly `max_tokens` output tokens (`ignore_eos`, temperature 0) so TPOT compares like with like.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from loadtests.text_source import TextSource

KINDS = ("shared_prefix", "multi_turn", "long_context", "completions", "vision")
VISION_KIND = "vision"  # the one kind that is not an LLM request: no tokens, no stream
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
_LIMITS: dict[str, tuple[int, int]] = {  # field -> allowed (low, high), checked by WorkloadParams.validate
    "max_tokens": (1, 4096), "prefix_groups": (1, 10_000), "prefix_tokens": (1, 32_768),
    "question_tokens": (1, 4096), "turns": (1, 64), "turn_tokens": (1, 4096),
    "long_context_tokens": (1, 131_072), "completion_prompt_tokens": (1, 32_768),
}


@dataclass(slots=True)
class WorkloadParams:
    """Sizes in tokens of the served model's tokenizer; ranges in `_LIMITS`. From the scenario or the CLI."""

    model: str = "smollm2-135m-instruct"
    seed: int = 0
    max_tokens: int = 32
    prefix_groups: int = 8
    prefix_tokens: int = 512
    question_tokens: int = 24
    turns: int = 4
    turn_tokens: int = 48
    long_context_tokens: int = 1500
    completion_prompt_tokens: int = 256
    # The vision model the `vision` users call; None: the only one the server serves.
    vision_model: str | None = None

    def validate(self) -> None:
        """Raises ValueError naming the first field out of range."""
        if self.vision_model is not None and (not isinstance(self.vision_model, str) or not self.vision_model):
            raise ValueError(f"vision_model must be a model name, got {self.vision_model!r}")
        for name, (low, high) in _LIMITS.items():
            value = getattr(self, name)
            if not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


@dataclass(slots=True)
class PreparedRequest:
    path: str
    body: dict[str, Any]


def _sampling(params: WorkloadParams) -> dict[str, Any]:
    return {"model": params.model, "max_tokens": params.max_tokens, "temperature": 0, "ignore_eos": True,
            "stream": True, "stream_options": {"include_usage": True}}


class WorkloadFactory:
    """Builds requests for one Locust process. `user_index` tells users apart (Locust hands out ids)."""

    def __init__(self, params: WorkloadParams, text: TextSource) -> None:
        params.validate()
        self.params = params
        self.text = text
        self._system_prompts: dict[int, str] = {}

    def _rng(self, *parts: object) -> random.Random:
        return random.Random("-".join(str(p) for p in (self.params.seed, *parts)))

    def system_prompt(self, group: int) -> str:
        if group not in self._system_prompts:
            passage = self.text.passage(self._rng("group", group), self.params.prefix_tokens)
            self._system_prompts[group] = passage
        return self._system_prompts[group]

    def shared_prefix(self, user_index: int, request_index: int) -> PreparedRequest:
        rng = self._rng("shared", user_index, request_index)
        group = rng.randrange(self.params.prefix_groups)
        question = self.text.passage(rng, self.params.question_tokens)
        messages = [{"role": "system", "content": self.system_prompt(group)},
                    {"role": "user", "content": question}]
        return PreparedRequest(CHAT_PATH, {**_sampling(self.params), "messages": messages})

    def long_context(self, user_index: int, request_index: int) -> PreparedRequest:
        rng = self._rng("long", user_index, request_index)
        document = self.text.passage(rng, self.params.long_context_tokens)
        messages = [{"role": "user", "content": document}]
        return PreparedRequest(CHAT_PATH, {**_sampling(self.params), "messages": messages})

    def completion(self, user_index: int, request_index: int) -> PreparedRequest:
        rng = self._rng("completion", user_index, request_index)
        prompt = self.text.passage(rng, self.params.completion_prompt_tokens)
        return PreparedRequest(COMPLETIONS_PATH, {**_sampling(self.params), "prompt": prompt})

    def conversation(self, user_index: int, conversation_index: int) -> Conversation:
        return Conversation(self, self._rng("conversation", user_index, conversation_index))


@dataclass(slots=True)
class Conversation:
    """One multi-turn chat: `next_request()` adds a user turn and returns the whole history; `answer()` adds
    the assistant's reply as the client received it. Done after `turns` user turns."""

    factory: WorkloadFactory
    rng: random.Random
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return sum(m["role"] == "user" for m in self.messages) >= self.factory.params.turns

    def next_request(self) -> PreparedRequest:
        turn = self.factory.text.passage(self.rng, self.factory.params.turn_tokens)
        self.messages.append({"role": "user", "content": turn})
        return PreparedRequest(CHAT_PATH, {**_sampling(self.factory.params), "messages": list(self.messages)})

    def answer(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})

    def drop_unanswered(self) -> None:
        """After a failed turn: forget it, so the history stays user/assistant alternating."""
        if self.messages and self.messages[-1]["role"] == "user":
            self.messages.pop()
