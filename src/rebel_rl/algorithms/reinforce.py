"""REINFORCE with a moving-average baseline (Williams 1992; the RLHF variant of Ahmadian et al.
2024).

Each completion y of prompt x is one action; its advantage is its reward minus a baseline b that
does not depend on y, and the loss is the negative policy-gradient surrogate

    loss(theta) = - mean_i [ (r_i - b) * log pi_theta(y_i | x_i) ],      b_{t+1} = d * b_t + (1 - d)
    * mean_i r_i

whose gradient is the REINFORCE estimate of -grad E[r]. The baseline of iteration t is computed from
earlier iterations only (the first uses its own batch mean), so it never includes the sample it
scores.
"""
from __future__ import annotations

import torch


def policy_gradient_loss(logps: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """-mean(advantage * log pi(y|x)) over sequences; the advantages are constants (detached)."""
    if logps.shape != advantages.shape:
        raise ValueError(
            f"logps {tuple(logps.shape)} and advantages {tuple(advantages.shape)} must have the "
            f"same shape"
        )
    return -(advantages.detach().to(logps.dtype) * logps).mean()


def update_moving_baseline(baseline: float | None, rewards: torch.Tensor, decay: float) -> float:
    """Next baseline: decay * baseline + (1 - decay) * mean(rewards); the batch mean when there is
    none yet."""
    batch_mean = float(rewards.float().mean())
    if baseline is None:
        return batch_mean
    return decay * baseline + (1.0 - decay) * batch_mean
