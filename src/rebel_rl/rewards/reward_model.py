"""A sequence-classification reward model (num_labels=1) wrapped as a TRL-style reward function."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from rebel_rl.data.prompts import clean_messages, is_conversational
from rebel_rl.errors import RewardError
from rebel_rl.hub import check_hub_id
from rebel_rl.rewards.builtin import completion_text

DEFAULT_MAX_LENGTH = 1024


class RewardModel:
    """Scores (prompt, completion) pairs with any `AutoModelForSequenceClassification` with one
    label.

    Callable as `rm(prompts, completions, **columns) -> list[float]`. Conversational prompts are
    rendered with the reward model's own chat template when it has one (prompt messages plus the
    completion as an assistant message); otherwise the completion text is appended to the prompt
    text. Inputs are truncated from the left to `max_length` so the end of the completion is kept.
    """

    __name__ = "reward_model"

    def __init__(
        self,
        path: str | tuple,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        max_length: int | None = None,
    ) -> None:
        """Load the tokenizer and model from a local folder or hub id, or take a `(model,
        tokenizer)` pair already in memory (the tokenizer object is copied, not changed);
        RewardError on any failure."""
        self.device = torch.device(device)
        self.batch_size = batch_size
        if isinstance(path, tuple):
            self.tokenizer, self.model = _check_objects(*path)
            self.path = getattr(self.model.config, "name_or_path", "") or type(self.model).__name__
        else:
            self.path = str(path)
            self.tokenizer, self.model = _load(self.path, dtype)
        self.model.to(self.device).eval()
        _ensure_pad_token(self.tokenizer, self.model)
        # Left truncation keeps the completion's end; right padding keeps position ids unshifted.
        self.tokenizer.truncation_side = "left"
        self.tokenizer.padding_side = "right"
        self.max_length = max_length or _default_max_length(self.tokenizer, self.model)

    def __call__(self, prompts: list, completions: list, **kwargs: Any) -> list[float]:
        """Return one float score per (prompt, completion) pair."""
        encoded = [self.encode(p, c) for p, c in zip(prompts, completions, strict=True)]
        scores: list[float] = []
        for start in range(0, len(encoded), self.batch_size):
            scores.extend(self._score(encoded[start : start + self.batch_size]))
        return scores

    def text(self, prompt: str | list[dict], completion: str | list[dict]) -> tuple[str, bool]:
        """Return the text to score for one pair and whether it came from the chat template."""
        answer = completion_text(completion)
        if is_conversational(prompt) and getattr(self.tokenizer, "chat_template", None):
            messages = clean_messages(prompt) + [{"role": "assistant", "content": answer}]
            return self.tokenizer.apply_chat_template(messages, tokenize=False), True
        if is_conversational(prompt):
            return "\n".join(str(m["content"]) for m in prompt) + "\n" + answer, False
        return str(prompt) + answer, False

    def encode(self, prompt: str | list[dict], completion: str | list[dict]) -> list[int]:
        """Token ids for one pair, truncated from the left to `max_length`."""
        text, templated = self.text(prompt, completion)
        # A chat template already writes any BOS token, so do not add special tokens twice.
        return self.tokenizer(
            text, add_special_tokens=not templated, truncation=True, max_length=self.max_length
        )["input_ids"]

    @torch.no_grad()
    def _score(self, batch: list[list[int]]) -> list[float]:
        """Pad one batch of token ids and return the model's single logit per row."""
        padded = self.tokenizer.pad({"input_ids": batch}, return_tensors="pt")
        logits = self.model(
            input_ids=padded["input_ids"].to(self.device),
            attention_mask=padded["attention_mask"].to(self.device),
        ).logits
        return logits[:, 0].float().cpu().tolist()


def _load(path: str, dtype: torch.dtype) -> tuple[Any, Any]:
    """Load tokenizer and model, checking num_labels from the config before reading any weights."""
    if not Path(path).expanduser().exists() and _looks_local(path):
        raise RewardError(f"reward model folder not found: {path} (check the path)")
    if not Path(path).expanduser().exists():  # a hub id: at once when the hub cannot be reached
        check_hub_id(path, "model", RewardError, "give a local reward model folder")
    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise RewardError(f"cannot load reward model '{path}': {_one_line(exc)}") from None
    if config.num_labels != 1:
        raise RewardError(
            f"reward model '{path}' has num_labels={config.num_labels}: a reward model must output "
            "one score (num_labels=1)"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, config=config, dtype=dtype)
    except Exception as exc:
        raise RewardError(f"cannot load reward model '{path}': {_one_line(exc)}") from None
    return tokenizer, model


def _check_objects(model: Any, tokenizer: Any) -> tuple[Any, Any]:
    """A reward model object with one output and its tokenizer (a copy: padding is set on it)."""
    import copy

    from transformers import PreTrainedModel

    labels = getattr(getattr(model, "config", None), "num_labels", None)
    if not isinstance(model, PreTrainedModel) or labels != 1:
        raise RewardError(
            f"reward_model is a {type(model).__name__} (num_labels={labels}): pass an "
            "AutoModelForSequenceClassification with num_labels=1 and its tokenizer"
        )
    if tokenizer is None or not callable(getattr(tokenizer, "pad", None)):
        raise RewardError("reward_model needs its tokenizer: pass reward_model=(model, tokenizer)")
    return copy.deepcopy(tokenizer), model


def _looks_local(path: str) -> bool:
    """Whether `path` was meant as a local folder rather than a hub id like 'org/name'."""
    return path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path


def _ensure_pad_token(tokenizer: Any, model: Any) -> None:
    """Batching needs a pad token: fall back to eos if the tokenizer has none.

    The model finds each row's last real token by skipping `config.pad_token_id`, so that id must
    be the one we pad with.
    """
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise RewardError(
                "reward model tokenizer has neither a pad nor an eos token: set pad_token"
            )
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id


def _default_max_length(tokenizer: Any, model: Any) -> int:
    """The smallest of the tokenizer limit, the model's position limit and 1024."""
    positions = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_LENGTH
    return min(tokenizer.model_max_length, positions, DEFAULT_MAX_LENGTH)


def _one_line(exc: BaseException) -> str:
    """The exception type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
