"""PPO for RLHF, token level (Schulman et al. 2017; Ouyang et al. 2022; Huang et al. 2024, "The N+
implementation details of RLHF with PPO").

Each completion token is an action. Per-token reward: the KL penalty at every token, plus the
sequence score at the last one:

    r_t = -kl_coef * (log pi_t(a_t|s_t) - log pi_ref(a_t|s_t)) + [t = last] * score

Advantages by GAE over the completion, A_t = sum_l (gamma*lam)^l delta_{t+l} with
delta_t = r_t + gamma * V(s_{t+1}) - V(s_t) (V = 0 after the last token), returns R_t = A_t +
V(s_t), then advantages whitened over the batch. With ratio rho_t = pi_theta(a_t|s_t) /
pi_t(a_t|s_t):

    policy loss = mean_t max( -A_t * rho_t, -A_t * clip(rho_t, 1 - eps, 1 + eps) )
    value loss  = 0.5 * mean_t max( (V_t - R_t)^2, (clip(V_t, V_old - eps_v, V_old + eps_v) - R_t)^2
    )

means over completion tokens (the mask covers tokens up to and including the first EOS).
"""
from __future__ import annotations

import torch


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` where `mask` is 1."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1)


def whiten(values: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shift and scale masked `values` to mean 0 and variance 1 (masked entries become 0)."""
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(var + eps) * mask


def token_rewards(
    score: torch.Tensor, token_kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Per-token rewards (N, T): -kl_coef * KL_t on every completion token, plus `score` (N,) on the
    last one."""
    rewards = -kl_coef * token_kl * mask
    last = (mask.long().sum(-1) - 1).clamp(min=0)
    return rewards.scatter_add(1, last[:, None], score[:, None].to(rewards.dtype))


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns (both (N, T)); positions outside `mask` are 0."""
    mask = mask.to(values.dtype)
    values = values * mask
    advantages = torch.zeros_like(values)
    running = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * mask[:, t]
        advantages[:, t] = running
    return advantages, (advantages + values) * mask


def clipped_surrogate(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                      clip_range: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The per-token clipped surrogate max(-A rho, -A clip(rho, 1 - eps, 1 + eps)) over (N, T), with
    rho = exp(logps - old_logps) and `advantages` broadcast against it (PPO's per token, GRPO's per
    completion). Returns (per-token loss, ratio, where the clipped term was taken); how tokens are
    averaged is the caller's (PPO over all tokens, GRPO per completion first)."""
    ratio = torch.exp(logps - old_logps.detach())
    advantages = advantages.detach()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), ratio, clipped > unclipped


def ppo_policy_loss(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clipped surrogate over tokens (N, T), averaged over the masked tokens. Returns (loss, ratio,
    fraction of tokens clipped)."""
    per_token, ratio, was_clipped = clipped_surrogate(logps, old_logps, advantages, clip_range)
    return masked_mean(per_token, mask), ratio, masked_mean(was_clipped.float(), mask)


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> torch.Tensor:
    """Clipped value loss over tokens (N, T): the new values may move at most `clip_range_value`
    from the old."""
    old_values, returns = old_values.detach(), returns.detach()
    clipped = old_values + (values - old_values).clamp(-clip_range_value, clip_range_value)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)
