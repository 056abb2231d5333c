"""Prompt rendering for one model: chat template + tokenization, done once per request in the ingress.

Engines then receive token ids only, so the router can hash prompt blocks and replicas never tokenize.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class ChatTemplateError(ValueError):
    """The messages cannot be rendered by the model's chat template (e.g. a role it does not accept)."""


class PromptTokenizer:
    def __init__(self, model_path: Path) -> None:
        from transformers import AutoTokenizer

        self._tokenizer: Any = AutoTokenizer.from_pretrained(str(model_path))
        if not getattr(self._tokenizer, "chat_template", None):
            raise ChatTemplateError(f"the tokenizer in {model_path} has no chat template")

    @property
    def eos_token_id(self) -> int | None:
        return self._tokenizer.eos_token_id

    def render_chat(self, messages: list[dict[str, str]]) -> str:
        try:
            return self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as error:  # jinja raises TemplateError / exceptions raised by the template
            raise ChatTemplateError(f"chat template rejected the messages: {error}") from error

    def encode(self, text: str) -> list[int]:
        # The chat template already wrote any special tokens the model expects.
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_chat(self, messages: list[dict[str, str]]) -> list[int]:
        return self.encode(self.render_chat(messages))

    def decode(self, token_ids: list[int]) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=True)

    @property
    def vocab_size(self) -> int:
        return len(self._tokenizer)
