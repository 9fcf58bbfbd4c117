"""DDPO: PPO over denoising steps for diffusion models (Black et al. 2023, "Training Diffusion
Models with Reinforcement Learning"), the baseline of the REBEL paper's image experiments.

Each denoising step x_t -> x_{t-1} of a sampled trajectory is an action; all steps of an image share
its advantage, the reward normalised per prompt (DDPO's per-prompt stat tracking):

    A = clip( (r - mean_p) / (std_p + 1e-6), -adv_clip, adv_clip )

where mean_p and std_p are over the last `buffer_size` rewards of the same prompt (this iteration's
included), or over the whole batch while a prompt has fewer than `min_count` of them. No value
model. With rho_{t} = pi_theta(x_{t-1}|x_t, c) / pi_old(x_{t-1}|x_t, c) per step, the clipped
surrogate is

    loss = mean_{images, steps} max( -A * rho_t, -A * clip(rho_t, 1 - eps, 1 + eps) )

i.e. PPO's `ppo_policy_loss` over the (N, T) step log-probs with an all-ones mask. Our step
log-probs are sums over all latent elements (true log-densities), where DDPO averages them; so our
ratios are the true per-step likelihood ratios and eps keeps its usual meaning (DDPO's 1e-4 is for
averaged ones).
"""
from __future__ import annotations

import torch

from .ppo import ppo_policy_loss

STD_EPS = 1e-6  # as DDPO's PerPromptStatTracker


class PromptStatTracker:
    """Per-prompt reward history and normalisation, as DDPO's `PerPromptStatTracker` (keys: any
    strings)."""

    def __init__(self, buffer_size: int, min_count: int) -> None:
        self.buffer_size = buffer_size
        self.min_count = min_count
        self.buffers: dict[str, list[float]] = {}

    def advantages(self, keys: list[str], rewards: torch.Tensor) -> torch.Tensor:
        """(r - mean) / (std + 1e-6) per row (N,), with each key's stats after adding this batch's
        rewards to its buffer; the batch's own mean and std (population std) while a key has <
        min_count rewards."""
        if len(keys) != rewards.numel():
            raise ValueError(f"{len(keys)} prompt keys for {rewards.numel()} rewards")
        values = rewards.detach().double().cpu().flatten()
        batch_mean, batch_std = values.mean(), values.std(unbiased=False)
        out = torch.empty_like(values)
        for key in dict.fromkeys(keys):
            rows = torch.tensor([i for i, k in enumerate(keys) if k == key])
            buffer = self.buffers.setdefault(key, [])
            buffer.extend(values[rows].tolist())
            del buffer[:-self.buffer_size]
            if len(buffer) < self.min_count:
                mean, std = batch_mean, batch_std
            else:
                history = torch.tensor(buffer, dtype=torch.float64)
                mean, std = history.mean(), history.std(unbiased=False)
            out[rows] = (values[rows] - mean) / (std + STD_EPS)
        return out.to(device=rewards.device, dtype=torch.float32)


def ddpo_loss(
    step_logps: torch.Tensor,
    old_step_logps: torch.Tensor,
    advantages: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clipped surrogate over every (image, step): `step_logps` (N, T) with grad,
    `old_step_logps` (N, T) from the sampling policy, `advantages` (N,) shared by an image's steps.
    Returns (loss, ratio, clip fraction)."""
    if (
        step_logps.dim() != 2
        or old_step_logps.shape != step_logps.shape
        or advantages.shape != step_logps.shape[:1]
    ):
        raise ValueError(
            f"step_logps {tuple(step_logps.shape)} and old_step_logps "
            f"{tuple(old_step_logps.shape)} must "
            f"be (N, T) and advantages {tuple(advantages.shape)} must be (N,)"
        )
    mask = torch.ones_like(step_logps)
    return ppo_policy_loss(
        step_logps, old_step_logps, advantages[:, None].expand_as(step_logps), mask, clip_range
    )
