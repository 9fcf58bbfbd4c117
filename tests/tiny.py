"""Tiny random models and in-memory tokenizers for tests: no downloads, seconds to build."""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

CORPUS = [
    "the movie was great and i loved it",
    "the food was terrible and the service was bad",
    "what a wonderful happy day in the sun",
    "tell me about your weekend please",
    "i feel sad and tired today",
    "describe a good book you read",
    "write one sentence about the sea",
    "summarize the post in a few words",
] * 4

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer(vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on CORPUS, with eos/pad/bos and a chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<pad>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _config(tokenizer, **overrides) -> LlamaConfig:
    kwargs = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    kwargs.update(overrides)
    return LlamaConfig(**kwargs)


def save_tiny_causal_lm(path: str | Path, seed: int = 0, **config_overrides) -> Path:
    """Save a tiny random LlamaForCausalLM and its tokenizer to `path`; return the path."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    model = LlamaForCausalLM(_config(tokenizer, **config_overrides))
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def save_tiny_reward_model(path: str | Path, seed: int = 1) -> Path:
    """Save a tiny random LlamaForSequenceClassification (num_labels=1) and its tokenizer."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    model = LlamaForSequenceClassification(_config(tokenizer, num_labels=1))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def save_tiny_gpt2(path: str | Path, seed: int = 0) -> Path:
    """A tiny GPT-2: absolute position embeddings, so wrong position ids under padding show up."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4, n_positions=128,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                        pad_token_id=tokenizer.pad_token_id)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return Path(path)


def write_jsonl(path: Path, rows: list[dict]) -> str:
    """Write `rows` as a JSON-lines file; return its path as a string (as configs take it)."""
    import json

    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)
