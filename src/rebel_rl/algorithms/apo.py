"""A*-PO: policy optimisation via optimal advantage regression
(Brantley, Gao, Sun et al., arXiv 2505.20686).

The KL-regularised optimum pi* proportional to pi_ref * exp(r / beta1) has the value

    V*(x) = beta1 * log E_{y ~ pi_ref(.|x)} [ exp(r(x, y) / beta1) ],

which stage 1 estimates once per prompt from k samples of pi_ref (`optimal_value`). Stage 2 samples
one completion per prompt from pi_t and regresses the policy's log-ratio to pi_ref onto the optimal
advantage:

    loss(theta) = mean_{x, y} [ beta2 * (log pi_theta(y|x) - log pi_ref(y|x))
                                - (r(x, y) - V*(x)) ]^2

(`apo_loss`). Its minimiser is pi_ref * exp((r - V*) / beta2): the KL to pi_ref is implicit in
beta2, so no separate KL penalty is needed, and no value network, critic or second sample per
prompt.
"""
from __future__ import annotations

import math

import torch


def apo_loss(logps: torch.Tensor, ref_logps: torch.Tensor, reward: torch.Tensor,
             vstar: torch.Tensor, beta2: float) -> torch.Tensor:
    """The A*-PO regression loss, averaged over rows:
    mean [ beta2 * (log pi_theta(y|x) - log pi_ref(y|x)) - (r(x, y) - V*(x)) ]^2.

    `logps` (N,): log pi_theta(y|x) with grad; `ref_logps` (N,): log pi_ref(y|x) (held fixed);
    `reward` (N,): r(x, y); `vstar` (N,): V*(x) of each row's prompt (`optimal_value`); `beta2` > 0
    weighs the log-ratio (the strength of the implicit KL regularisation towards pi_ref).
    """
    if logps.dim() != 1:
        raise ValueError(f"logps must have shape (N,), got {tuple(logps.shape)}")
    for name, t in (("ref_logps", ref_logps), ("reward", reward), ("vstar", vstar)):
        if t.shape != logps.shape:
            raise ValueError(f"{name} {tuple(t.shape)} must have the shape of logps "
                             f"{tuple(logps.shape)}")
    log_ratio = logps - ref_logps.detach().to(logps.dtype)
    advantage = reward.detach().to(logps.dtype) - vstar.detach().to(logps.dtype)
    return ((beta2 * log_ratio - advantage) ** 2).mean()


def optimal_value(rewards: torch.Tensor, beta1: float) -> torch.Tensor:
    """V*(x) per prompt from k rewards of pi_ref samples: beta1 * log mean_j exp(r_j / beta1).

    `rewards` (P, k): the rewards of k samples of pi_ref for each of P prompts; returns (P,).
    Computed as beta1 * (logsumexp(r / beta1) - log k), so rewards of 1000 do not overflow. As
    beta1 -> 0 it tends to max_j r_j, and as beta1 grows to the mean reward.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 1:
        raise ValueError(f"rewards must have shape (num_prompts, k) with k >= 1, "
                         f"got {tuple(rewards.shape)}")
    if beta1 <= 0:
        raise ValueError(f"beta1 must be > 0, got {beta1}")
    rewards = rewards.double()
    return beta1 * (torch.logsumexp(rewards / beta1, dim=1) - math.log(rewards.shape[1]))
