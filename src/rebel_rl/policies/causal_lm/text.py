"""The rollout of a causal LM: prompt and completion token ids with their masks.

Prompts are left-padded and completions right-padded, so every completion starts at the same column;
`completion_mask` is 1 on completion tokens up to and including the first EOS, 0 after. A
multi-turn episode (multiturn.py) is one sequence too: its completion holds the policy's turns and
the environment's messages between them; `completion_mask` is 1 on the policy's own tokens only (so
log-probs, KL and every loss skip the environment's), and `completion_attention_mask` is 1 on every
token of the dialogue (what the forward passes attend to).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..base import Rollout


@dataclass
class TextRollout(Rollout):
    """Sampled (or written) completions of a causal LM, `n` consecutive rows per prompt."""

    prompt_ids: torch.Tensor  # (N, P)
    prompt_mask: torch.Tensor  # (N, P)
    completion_ids: torch.Tensor  # (N, C)
    completion_mask: torch.Tensor  # (N, C)
    has_eos: torch.Tensor  # (N,) bool: the completion emitted EOS before max_new_tokens
    # decoded text, up to (not including) the first EOS; episodes: transcript
    completions: list[str]
    # Episodes only (None = single-turn); keyword-only, so kinds extending TextRollout keep theirs.
    completion_attention_mask: torch.Tensor | None = field(default=None, kw_only=True)  # (N, C)
    episode_rewards: torch.Tensor | None = field(default=None, kw_only=True)  # (N,) the returns
    turns: torch.Tensor | None = field(default=None, kw_only=True)  # (N,) policy turns played

    @property
    def attention(self) -> torch.Tensor:
        """The mask the forward passes attend to over the completion: every dialogue token of an
        episode, the scored tokens (`completion_mask`) otherwise."""
        given = self.completion_attention_mask
        return self.completion_mask if given is None else given

    def completion_token_ids(self) -> list[list[int]]:
        lengths = self.attention.sum(-1)
        return [ids[: int(n)].tolist() for ids, n in zip(self.completion_ids, lengths)]

    def conditioning_rows(self) -> torch.Tensor:
        # Padding is not part of the prompt: masked-out positions all read as -1.
        return torch.where(self.prompt_mask.bool(), self.prompt_ids,
                           torch.full_like(self.prompt_ids, -1))


def first_eos_mask(completion_ids: torch.Tensor,
                   eos_token_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of tokens up to and including the first EOS of each row, and whether the row has one."""
    is_eos = torch.isin(completion_ids, eos_token_ids.to(completion_ids.device))
    eos_strictly_before = is_eos.long().cumsum(-1) - is_eos.long()
    return (eos_strictly_before == 0).long(), is_eos.any(-1)


def concat_rollouts(rollouts: list[TextRollout], pad_token_id: int) -> TextRollout:
    """The rows of several rollouts, in order, in one TextRollout: prompts left-padded and
    completions right-padded (with `pad_token_id`, mask 0) to the widest, so every completion still
    starts at the same column and log-probs are those of each part on its own (masks and position
    ids ignore padding)."""
    prompt_width = max(r.prompt_ids.shape[1] for r in rollouts)
    completion_width = max(r.completion_ids.shape[1] for r in rollouts)

    def pad(t: torch.Tensor, width: int, value: int, left: bool) -> torch.Tensor:
        extra = t.new_full((t.shape[0], width - t.shape[1]), value)
        return torch.cat([extra, t] if left else [t, extra], dim=1)

    return TextRollout(
        prompt_ids=torch.cat([pad(r.prompt_ids, prompt_width, pad_token_id,
                                  True) for r in rollouts]),
        prompt_mask=torch.cat([pad(r.prompt_mask, prompt_width, 0, True) for r in rollouts]),
        completion_ids=torch.cat([pad(r.completion_ids, completion_width, pad_token_id,
                                      False) for r in rollouts]),
        completion_mask=torch.cat([pad(r.completion_mask, completion_width, 0,
                                       False) for r in rollouts]),
        has_eos=torch.cat([r.has_eos for r in rollouts]),
        completions=[text for r in rollouts for text in r.completions],
        **_episode_fields(rollouts, lambda t: pad(t, completion_width, 0, False)),
    )


def _episode_fields(rollouts: list[TextRollout], pad_completion) -> dict[str, torch.Tensor]:
    """The episode fields of concatenated rollouts: none when no part is an episode, else each
    part's own or its single-turn value (attention = completion_mask, return 0, one turn)."""
    if all(r.completion_attention_mask is None for r in rollouts):
        return {}
    return {
        "completion_attention_mask": torch.cat([pad_completion(r.attention) for r in rollouts]),
        "episode_rewards": torch.cat([torch.zeros(len(r)) if r.episode_rewards is None
                                      else r.episode_rewards for r in rollouts]),
        "turns": torch.cat([torch.ones(len(r), dtype=torch.long) if r.turns is None else r.turns
                            for r in rollouts]),
    }
