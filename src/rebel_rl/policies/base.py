"""What every policy hands to the online loop: a Rollout of sampled sequences."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Rollout:
    """Sampled completions, `n` consecutive rows per prompt.

    Prompts are left-padded and completions right-padded, so every completion starts at the same
    column. `completion_mask` is 1 on completion tokens up to and including the first EOS, 0 after.
    """

    prompt_ids: torch.Tensor  # (N, P)
    prompt_mask: torch.Tensor  # (N, P)
    completion_ids: torch.Tensor  # (N, C)
    completion_mask: torch.Tensor  # (N, C)
    has_eos: torch.Tensor  # (N,) bool: the completion emitted EOS before max_new_tokens
    completions: list[str]  # decoded text, up to (not including) the first EOS

    def __len__(self) -> int:
        return self.completion_ids.shape[0]

    def select(self, index: torch.Tensor) -> "Rollout":
        """The rows `index` (a 1-D long tensor) of every field."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            values[f.name] = [value[i] for i in index.tolist()] if isinstance(value, list) else value[index.to(value.device)]
        return Rollout(**values)

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)
