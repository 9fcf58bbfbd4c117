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


def attach_importance_weights(extra: dict[str, torch.Tensor], trainer_logps: torch.Tensor,
                              cap: float, prefix: str) -> dict[str, float]:
    """Store in `extra["tis_weights"]` the capped weights of a batch whose `extra` holds the
    drawing weights' sequence log-probs ("sampler_logps", put there by the loop for a batch
    drawn one update ahead), and return their metrics under `prefix` ("grpo/tis/weight_mean").
    A no-op with no metrics when `cap` is 0 (off) or the batch was drawn by pi_t itself (no
    "sampler_logps"): its weights would all be 1."""
    sampler_logps = extra.get("sampler_logps")
    if cap <= 0 or sampler_logps is None:
        return {}
    extra["tis_weights"], stats = truncated_importance_weights(trainer_logps, sampler_logps, cap)
    return {f"{prefix}/{key}": value for key, value in stats.items()}


def weighted_advantages(advantages: torch.Tensor, extra: dict[str, torch.Tensor]) -> torch.Tensor:
    """`advantages` (N,) or (N, T) times each sequence's weight `extra["tis_weights"]` (N,),
    broadcast over tokens; unchanged without weights. A weight w >= 0 scaling the advantage
    scales the clipped surrogate by exactly w (max(-wA rho, -wA clip(rho)) = w max(-A rho,
    -A clip(rho))) and RLOO's -A log pi term too, so the losses of algorithms/ weight each
    sample's term, before any token reduction, with no change of their own."""
    weights = extra.get("tis_weights")
    if weights is None:
        return advantages
    shape = (-1,) + (1,) * (advantages.dim() - 1)
    return advantages * weights.to(advantages.device, advantages.dtype).view(shape)
