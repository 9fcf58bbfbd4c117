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

GROUP_STD_EPS = 1e-4


def grpo_advantages(rewards: torch.Tensor, scale: bool = True) -> torch.Tensor:
    """Group-relative advantages (P, n) from rewards (P, n): centred per prompt, and divided by the
    group's sample std when `scale`."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    if not scale:
        return centred
    return centred / (rewards.std(-1, keepdim=True) + GROUP_STD_EPS)


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
              clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate over tokens (N, T) with one advantage (N,) per completion, averaged per completion
    and then over completions. Returns (loss, ratio, fraction of tokens clipped)."""
    mask = mask.to(logps.dtype)
    ratio = torch.exp(logps - old_logps.detach())
    advantage = advantages.detach()[:, None]
    unclipped = -advantage * ratio
    clipped = -advantage * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    per_token = torch.maximum(unclipped, clipped) * mask
    lengths = mask.sum(-1).clamp(min=1)
    loss = (per_token.sum(-1) / lengths).mean()
    clip_fraction = ((clipped > unclipped).to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1)
    return loss, ratio, clip_fraction
