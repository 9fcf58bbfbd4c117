"""Truncated importance sampling (TIS) for samples drawn by weights other than the trainer's.

A batch drawn by pi_sampler (async rollouts: one update stale; or another numerical engine) and
trained on with log pi_t recomputed by the trainer is weighted, per sample i, by

    w_i = stopgrad( min( exp(log pi_t(y_i|x) - log pi_sampler(y_i|x)), cap ) )

so that E_{y ~ pi_sampler}[w * g(y)] = E_{y ~ pi_t}[g(y)] when no weight reaches the cap (as TRL's
vllm_importance_sampling_correction / _cap and verl's rollout correction do). The cap bounds the
variance at the price of a bias on samples pi_sampler under-draws.
"""
from __future__ import annotations

import torch


def truncated_importance_weights(trainer_logps: torch.Tensor, sampler_logps: torch.Tensor,
                                 cap: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Detached weights (N,) min(exp(trainer - sampler), cap) from sequence log-probs (N,), and
    their metrics: the mean weight and the fraction of samples the cap truncated."""
    if cap <= 0:
        raise ValueError(f"cap must be positive, got {cap}")
    ratio = torch.exp(trainer_logps.detach() - sampler_logps.detach().to(trainer_logps.device))
    weights = ratio.clamp(max=cap)
    stats = {"tis/weight_mean": float(weights.mean()),
             "tis/clipped_fraction": float((ratio > cap).float().mean())}
    return weights, stats
