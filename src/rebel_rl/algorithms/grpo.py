"""GRPO, Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath), with the KL penalty in the
reward as every algorithm here has it (instead of GRPO's separate KL term in the loss).

Each prompt's n completions form a group; a completion's advantage is its reward standardised within
the group (no value model), and every token of the completion shares it:

    A_i = (r_i - mean_j r_j) / (std_j r_j + eps)        (scale_rewards; else A_i = r_i - mean_j r_j)

With the per-token ratio rho_{i,t} = pi_theta(y_{i,t}|x, y_{i,<t}) / pi_t(y_{i,t}|x, y_{i,<t}), each
completion's clipped surrogate is averaged over its own tokens, then over completions:

    loss = mean_i (1/|y_i|) sum_t max( -A_i * rho_{i,t}, -A_i * clip(rho_{i,t}, 1 - eps_c, 1 + eps_c) )
"""
from __future__ import annotations

import torch

from .ppo import clipped_surrogate

GROUP_STD_EPS = 1e-4  # keeps a group of equal rewards at 0 instead of 0 / 0


def standardise_groups(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards (G, n) standardised within each row: (r - mean) / (sample std + GROUP_STD_EPS).
    GRPO's advantages and `reward_normalization` (prompt: a row per prompt; batch: one) share it."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, keepdim=True) + GROUP_STD_EPS)


def grpo_advantages(rewards: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Group-relative advantages (P, n) from rewards (P, n): centred per prompt, and divided by the
    group's sample std when `scale`."""
    if scale:
        return standardise_groups(rewards)
    return rewards - rewards.mean(-1, keepdim=True)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate over tokens (N, T) with one advantage (N,) per completion, averaged per completion
    and then over completions. Returns (loss, ratio, fraction of tokens clipped)."""
    mask = mask.to(logps.dtype)
    per_token, ratio, was_clipped = clipped_surrogate(logps, old_logps, advantages[:, None],
                                                      clip_range)
    lengths = mask.sum(-1).clamp(min=1)
    loss = ((per_token * mask).sum(-1) / lengths).mean()
    clip_fraction = (was_clipped.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1)
    return loss, ratio, clip_fraction
