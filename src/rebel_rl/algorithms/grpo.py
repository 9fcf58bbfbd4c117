"""GRPO, Group Relative Policy Optimisation (Shao et al. 2024, DeepSeekMath), with the KL penalty
in the reward as every algorithm here has it (instead of GRPO's separate KL term in the loss).

Each prompt's n completions form a group; a completion's advantage is its reward centred within the
group (no value model), and every token of the completion shares it:

    A_i = (r_i - mean_j r_j) / (std + eps)    std: the group's ("group", GRPO), the whole batch's
                                              ("batch"); "none" (Dr. GRPO) divides by nothing

With the per-token ratio rho_{i,t} = pi_theta(y_{i,t}|x, y_{i,<t}) / pi_t(y_{i,t}|x, y_{i,<t}) and
l_{i,t} = max( -A_i * rho_{i,t}, -A_i * clip(rho_{i,t}, 1 - eps_c, 1 + eps_c) ), the loss reduces
the token terms in one of the ways TRL's GRPOConfig.loss_type names (N completions in the batch):

    "grpo"    mean_i (1/|y_i|) sum_t l_{i,t}            each completion weighs the same (default)
    "bnpo"    sum_{i,t} l_{i,t} / sum_i |y_i|           each token weighs the same (this batch)
    "dapo"    sum_{i,t} l_{i,t} / num_tokens            the same over the whole optimiser step's
                                                        tokens (all micro-batches, all ranks)
    "dr_grpo" sum_{i,t} l_{i,t} / (N * L_max)           a constant: L_max = max_completion_length

"grpo" divides a long completion's tokens by its length, so a long wrong answer is penalised less
per token than a short one (the length bias of Dr. GRPO, Liu et al. 2025, arXiv 2503.20783); the
other three weigh every token the same. Dr. GRPO also drops the std division (scale "none":
A_i = r_i - mean_j r_j), which otherwise up-weights groups whose rewards nearly agree. DAPO (Yu et
al. 2025, arXiv 2503.14476) is the token-level mean over the step.
"""
from __future__ import annotations

import torch

from .ppo import clipped_surrogate

GROUP_STD_EPS = 1e-4  # keeps a group of equal rewards at 0 instead of 0 / 0
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")


def standardise_groups(rewards: torch.Tensor) -> torch.Tensor:
    """Rewards (G, n) standardised within each row: (r - mean) / (sample std + GROUP_STD_EPS).
    GRPO's advantages and `reward_normalization` (prompt: a row per prompt; batch: one) share it."""
    centred = rewards - rewards.mean(-1, keepdim=True)
    return centred / (rewards.std(-1, keepdim=True) + GROUP_STD_EPS)


def grpo_advantages(rewards: torch.Tensor, scale: bool | str = True) -> torch.Tensor:
    """Group-relative advantages (P, n) from rewards (P, n), centred per prompt and divided by a
    std: `scale` "group" (or True, GRPO) the group's sample std, "batch" the sample std of all P * n
    rewards, "none" (or False, Dr. GRPO) none. Each std gets GROUP_STD_EPS added."""
    mode = ("group" if scale else "none") if isinstance(scale, bool) else scale
    if mode not in SCALE_REWARDS:
        raise ValueError(f"scale must be one of {SCALE_REWARDS} (or a bool), got {scale!r}")
    if mode == "group":
        return standardise_groups(rewards)
    centred = rewards - rewards.mean(-1, keepdim=True)
    if mode == "batch":
        return centred / (rewards.std() + GROUP_STD_EPS)
    return centred


def grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
              mask: torch.Tensor, clip_range: float, loss_type: str = "grpo",
              max_completion_length: int | None = None, num_tokens: float | None = None,
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate over tokens (N, T) with one advantage (N,) per completion, reduced as
    `loss_type` says (module docstring): "grpo" per completion then over completions (default),
    "bnpo" over this batch's tokens, "dapo" over `num_tokens` (this batch's when None), "dr_grpo"
    over N * `max_completion_length` (T when None). For a token mean over a whole optimiser step,
    `num_tokens` is the step's token count (all micro-batches, all ranks) divided by what the
    caller's averaging already divides by (the ranks' gradient mean; accumulation steps when each
    micro-batch's loss is divided by them), as TRL's num_items_in_batch / num_processes.
    Returns (loss, ratio, fraction of tokens clipped)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")
    mask = mask.to(logps.dtype)
    per_token, ratio, was_clipped = clipped_surrogate(logps, old_logps, advantages[:, None],
                                                      clip_range)
    masked = per_token * mask
    if loss_type == "grpo":
        loss = (masked.sum(-1) / mask.sum(-1).clamp(min=1)).mean()
    elif loss_type == "dr_grpo":
        length = logps.shape[1] if max_completion_length is None else max_completion_length
        if length < mask.sum(-1).max():
            raise ValueError(f"max_completion_length {length} is below the longest completion "
                             f"({int(mask.sum(-1).max())} tokens); pass the sampling limit")
        loss = masked.sum() / (logps.shape[0] * length)
    elif loss_type == "dapo" and num_tokens is not None:
        loss = masked.sum() / num_tokens
    else:  # bnpo, and dapo when the step's token count is this batch's
        loss = masked.sum() / mask.sum().clamp(min=1)
    clip_fraction = (was_clipped.to(mask.dtype) * mask).sum() / mask.sum().clamp(min=1)
    return loss, ratio, clip_fraction
