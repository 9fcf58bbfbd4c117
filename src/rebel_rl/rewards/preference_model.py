"""A pairwise preference model: P(a > b | x) from a one-logit sequence classifier that reads both
completions.

The classifier reads the prompt and completion a exactly as `RewardModel` lays them out (its own
chat template or plain concatenation), then one separator token (the tokenizer's EOS) and completion
b: logit f(x, a, b). Trained by `rebel preference-model` on preference pairs shown in both orders,
so that f(x, a, b) ~ -f(x, b, a); at inference both orders are read and averaged,

    P(a > b | x) = ( sigmoid(f(x, a, b)) + 1 - sigmoid(f(x, b, a)) ) / 2,

which makes P(a > b | x) + P(b > a | x) = 1 exactly. Unlike a reward model it can express
intransitive preferences (a > b > c > a). Its config.json carries `pairwise_preference: true`.
"""
from __future__ import annotations

from typing import Any

import torch

from rebel_rl.errors import RewardError
from rebel_rl.rewards.builtin import completion_text
from rebel_rl.rewards.reward_model import RewardModel

PAIRWISE_FLAG = "pairwise_preference"


class PreferenceModel(RewardModel):
    """Callable as `model(prompts, completions_a, completions_b, **columns) -> list[float]` in [0,
    1]."""

    __name__ = "preference_model"

    def __init__(
        self,
        path: str,
        device: str = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        max_length: int | None = None,
        require_pairwise: bool = True,
    ) -> None:
        """Load like `RewardModel`; RewardError if the folder is not a pairwise model (unless
        `require_pairwise` is False, as while one is being trained)."""
        super().__init__(
            path, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length
        )
        if require_pairwise and not getattr(self.model.config, PAIRWISE_FLAG, False):
            raise RewardError(
                f"'{path}' is not a pairwise preference model (its config has no {PAIRWISE_FLAG}): "
                "train one with `rebel preference-model`, or use it as a reward (`--rewards "
                "model:PATH`)"
            )

    def encode_pair(self, prompt: Any, a: Any, b: Any) -> list[int]:
        """Token ids of (prompt, a) as `RewardModel.encode` gives them, the separator, then b;
        truncated from the left to `max_length`."""
        sep = self.tokenizer.eos_token_id
        second = self.tokenizer(completion_text(b), add_special_tokens=False)["input_ids"]
        return (self.encode(prompt, a) + [sep] + second)[-self.max_length:]

    def __call__(
        self, prompts: list, completions_a: list, completions_b: list, **columns: Any
    ) -> list[float]:
        """P(a > b | x) per row, both orders read and averaged."""
        rows = list(zip(prompts, completions_a, completions_b, strict=True))
        forward = [self.encode_pair(p, a, b) for p, a, b in rows]
        backward = [self.encode_pair(p, b, a) for p, a, b in rows]
        logits = []
        for ids in (forward, backward):
            scores: list[float] = []
            for start in range(0, len(ids), self.batch_size):
                scores.extend(self._score(ids[start:start + self.batch_size]))
            logits.append(torch.tensor(scores))
        return ((torch.sigmoid(logits[0]) + 1 - torch.sigmoid(logits[1])) / 2).tolist()
