"""RLOO: REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024).

Sample k completions per prompt; each one's baseline is the mean reward of the OTHER k - 1:

    A_i = r_i - 1/(k-1) * sum_{j != i} r_j,         loss(theta) = - mean_i [ A_i * log pi_theta(y_i
    | x) ]

The baseline excludes the sample itself, so the gradient estimate stays unbiased. The surrogate is
`policy_gradient_loss` from reinforce.py: RLOO differs from REINFORCE only in its baseline.
"""
from __future__ import annotations

import torch


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """Leave-one-out advantages for rewards of shape (num_prompts, k), k >= 2; same shape."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(
            f"rewards must have shape (num_prompts, k) with k >= 2, got {tuple(rewards.shape)}"
        )
    k = rewards.shape[1]
    others_mean = (rewards.sum(dim=1, keepdim=True) - rewards) / (k - 1)
    return rewards - others_mean
