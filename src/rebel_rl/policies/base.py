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


def concat_rollouts(rollouts: list[Rollout], pad_token_id: int) -> Rollout:
    """The rows of several rollouts, in order, in one Rollout: prompts left-padded and completions
    right-padded (with `pad_token_id`, mask 0) to the widest, so every completion still starts at the
    same column and log-probs are those of each part on its own (masks and position ids ignore padding)."""
    prompt_width = max(r.prompt_ids.shape[1] for r in rollouts)
    completion_width = max(r.completion_ids.shape[1] for r in rollouts)

    def pad(t: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
        extra = t.new_full((t.shape[0], width - t.shape[1]), value)
        return torch.cat([extra, t] if left else [t, extra], dim=1)

    return Rollout(
        prompt_ids=torch.cat([pad(r.prompt_ids, prompt_width, pad_token_id, True) for r in rollouts]),
        prompt_mask=torch.cat([pad(r.prompt_mask, prompt_width, 0, True) for r in rollouts]),
        completion_ids=torch.cat([pad(r.completion_ids, completion_width, pad_token_id, False) for r in rollouts]),
        completion_mask=torch.cat([pad(r.completion_mask, completion_width, 0, False) for r in rollouts]),
        has_eos=torch.cat([r.has_eos for r in rollouts]),
        completions=[text for r in rollouts for text in r.completions],
    )
