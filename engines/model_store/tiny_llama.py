"""A tiny randomly initialised Llama with its own byte-level BPE tokenizer, generated locally in seconds.

For tests that need a real checkpoint vLLM can load (and a real tokenizer with a chat template) but not
meaningful text. Deterministic: the same seed gives the same weights and vocabulary.
"""

from __future__ import annotations

from pathlib import Path

from engines.model_store.progress import StepProgress

# ChatML, as SmolLM2 uses, so chat-template code paths are the same for both shipped models.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
VOCAB_SIZE = 512
# head_dim = hidden / heads = 64: vLLM's CPU attention supports only some head sizes.
HIDDEN_SIZE = 128
NUM_HEADS = 2


def _training_corpus() -> list[str]:
    sentences = [
        "What is the capital of France? The capital of France is Paris.",
        "The quick brown fox jumps over the lazy dog. 0123456789",
        "Hello, how are you today? I am a small language model running on a serving cluster.",
        "Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex.",
        "Requests arrive, are routed to a replica, and tokens stream back to the client one by one.",
    ]
    return sentences * 8


def _build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    core.train_from_iterator(_training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_random_llama(target: Path, seed: int = 0) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    progress = StepProgress("tiny-random-llama", total_steps=2)
    progress.step("training a byte-level BPE tokenizer")
    tokenizer = _build_tokenizer()
    progress.step("initialising and saving random weights")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN_SIZE,
        intermediate_size=2 * HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=NUM_HEADS,
        num_key_value_heads=NUM_HEADS,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        torch_dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    progress.done()
