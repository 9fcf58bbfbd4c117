"""REBEL: REgression to RElative REward Based RL (Gao et al., NeurIPS 2024, arXiv 2404.16767).

For a prompt x with completions y_1..y_n sampled from pi_t, REBEL fits the new policy by least squares
on every pair i < j:

    loss(theta) = mean_{x, i<j} [ (1/eta) * ( (log pi_theta(y_i|x) - log pi_t(y_i|x))
                                            - (log pi_theta(y_j|x) - log pi_t(y_j|x)) )
                                  - ( r(x, y_i) - r(x, y_j) ) ]^2

Its exact minimiser is pi_theta proportional to pi_t * exp(eta * r): one REBEL iteration is a
mirror-descent (natural policy gradient) step, with no value network and no clipping. For n = 2 this
is exactly the paper's loss.
"""
from __future__ import annotations

import torch


def rebel_loss(logps: torch.Tensor, old_logps: torch.Tensor, rewards: torch.Tensor, eta: float) -> torch.Tensor:
    """The REBEL regression loss, averaged over prompts and over all pairs i < j of their samples.

    `logps` (num_prompts, n): sequence log-probs under the policy being trained (with grad);
    `old_logps` (num_prompts, n): the same under pi_t, the policy that sampled them (held fixed);
    `rewards` (num_prompts, n): the rewards. `eta` > 0 is the step size.
    """
    if logps.dim() != 2 or logps.shape[1] < 2:
        raise ValueError(f"logps must have shape (num_prompts, n) with n >= 2, got {tuple(logps.shape)}")
    if old_logps.shape != logps.shape or rewards.shape != logps.shape:
        raise ValueError(
            f"logps {tuple(logps.shape)}, old_logps {tuple(old_logps.shape)} and rewards "
            f"{tuple(rewards.shape)} must have the same shape"
        )
    log_ratio = logps - old_logps.detach()
    rewards = rewards.detach().to(log_ratio.dtype)
    i, j = torch.triu_indices(logps.shape[1], logps.shape[1], offset=1, device=logps.device)
    predicted = (log_ratio[:, i] - log_ratio[:, j]) / eta
    target = rewards[:, i] - rewards[:, j]
    return ((predicted - target) ** 2).mean()
