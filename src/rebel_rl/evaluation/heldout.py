"""Held-out evaluation: reward and KL(pi || pi_ref) on fixed prompts, with standard errors."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..policies.causal_lm import CausalLMPolicy


@dataclass
class EvalResult:
    """Mean reward and KL with standard errors over prompts, per-prompt scores, a few samples."""

    reward: float
    reward_se: float
    kl: float
    kl_se: float
    rewards: dict[str, float]
    mean_length: float
    no_eos_fraction: float
    per_prompt_reward: list[float]
    samples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean (sample std / sqrt(count)); 0 for fewer than two values."""
    if values.numel() < 2:
        return 0.0
    return float(values.std(unbiased=True) / math.sqrt(values.numel()))


@torch.no_grad()
def evaluate(
    policy: CausalLMPolicy,
    dataset,
    reward_set,
    *,
    num_generations: int = 2,
    temperature: float | None = None,
    batch_size: int = 32,
    reference: bool = False,
    num_samples_kept: int = 4,
) -> EvalResult:
    """Sample `num_generations` completions per held-out prompt from the policy (or pi_ref) and score them.

    Reward and KL standard errors are over prompts (the samples of one prompt are averaged first), so
    they stay honest when samples of the same prompt are correlated. KL is the Monte-Carlo estimate
    mean[log pi(y) - log pi_ref(y)], y ~ pi, at the evaluation temperature.
    """
    scores, kls, lengths, no_eos, per_reward, samples = [], [], [], [], {}, []
    columns = [c for c in dataset.column_names if c != "prompt"]
    prompts_per_batch = max(1, batch_size // num_generations)
    for start in range(0, len(dataset), prompts_per_batch):
        rows = dataset[start:start + prompts_per_batch]
        prompts = rows["prompt"]
        rollout = policy.sample(prompts, num_generations, reference=reference, temperature=temperature)
        logps = policy.log_probs(rollout, reference=reference, temperature=temperature)
        ref_logps = logps if reference else policy.log_probs(rollout, reference=True, temperature=temperature)
        repeated = [p for p in prompts for _ in range(num_generations)]
        extra = {c: [v for v in rows[c] for _ in range(num_generations)] for c in columns}
        total, named = reward_set(repeated, rollout.completions, extra)
        scores.append(total.cpu())
        kls.append((logps - ref_logps).float().cpu())
        lengths.append(rollout.lengths.float().cpu())
        no_eos.append((~rollout.has_eos).float().cpu())
        for name, values in named.items():
            per_reward.setdefault(name, []).append(values.cpu())
        for i in range(0, len(rollout), num_generations):
            if len(samples) < num_samples_kept:
                samples.append({"prompt": _prompt_text(repeated[i]), "completion": rollout.completions[i],
                                "reward": float(total[i])})
    score = torch.cat(scores).view(-1, num_generations).mean(-1)
    kl = torch.cat(kls).view(-1, num_generations).mean(-1)
    return EvalResult(
        reward=float(score.mean()),
        reward_se=standard_error(score),
        kl=float(kl.mean()),
        kl_se=standard_error(kl),
        rewards={name: float(torch.cat(v).mean()) for name, v in per_reward.items()},
        mean_length=float(torch.cat(lengths).mean()),
        no_eos_fraction=float(torch.cat(no_eos).mean()),
        per_prompt_reward=score.tolist(),
        samples=samples,
    )


def paired_difference(before: EvalResult, after: EvalResult) -> tuple[float, float]:
    """Mean and standard error of the per-prompt reward change (same prompts before and after)."""
    diff = torch.tensor(after.per_prompt_reward) - torch.tensor(before.per_prompt_reward)
    return float(diff.mean()), standard_error(diff)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(m["content"] for m in prompt if m.get("role") == "user") or str(prompt)
    return str(prompt)
