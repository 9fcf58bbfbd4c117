"""Held-out evaluation: reward and KL(pi || pi_ref) on fixed prompts, with standard errors."""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..policies.causal_lm import CausalLMPolicy


@dataclass
class EvalResult:
    """Mean reward and KL with standard errors over prompts, per-prompt scores, a few samples.

    `rewards`/`rewards_se` hold each named reward (training rewards and evaluation-only ones such as a
    judge's win rate); `reward` is the weighted training reward the run optimises.
    """

    reward: float
    reward_se: float
    kl: float
    kl_se: float
    rewards: dict[str, float]
    mean_length: float
    no_eos_fraction: float
    per_prompt_reward: list[float]
    samples: list[dict[str, Any]] = field(default_factory=list)
    rewards_se: dict[str, float] = field(default_factory=dict)
    temperature: float | None = None
    kl_temperature: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def standard_error(values: torch.Tensor) -> float:
    """Standard error of the mean (sample std / sqrt(count)); 0 for fewer than two values."""
    if values.numel() < 2:
        return 0.0
    return float(values.std(unbiased=True) / math.sqrt(values.numel()))


@contextlib.contextmanager
def seeded(seed: int | None):
    """Sample with a fixed seed inside, leaving the caller's random stream exactly as it was."""
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@torch.no_grad()
def evaluate(
    policy: CausalLMPolicy,
    dataset,
    reward_set,
    *,
    eval_reward_set=None,
    num_generations: int = 2,
    temperature: float | None = None,
    batch_size: int = 32,
    reference: bool = False,
    num_samples_kept: int = 4,
    seed: int | None = 0,
) -> EvalResult:
    """Sample `num_generations` completions per held-out prompt from the policy (or pi_ref) and score them.

    Scores (training rewards, plus `eval_reward_set`'s evaluation-only rewards such as a judge) are
    taken at `temperature` (default: the policy's; the paper evaluates at 0.01). KL(pi || pi_ref) is the
    Monte-Carlo estimate mean[log pi(y) - log pi_ref(y)], y ~ pi at the policy's own sampling temperature,
    from separate samples when `temperature` differs (a near-greedy temperature has no useful KL).
    Standard errors are over prompts (each prompt's samples averaged first), so they stay honest when
    samples of a prompt are correlated. A fixed `seed` gives every evaluation the same random numbers.
    """
    temperature = policy.temperature if temperature is None else temperature
    separate_kl = abs(temperature - policy.temperature) > 1e-12
    scores, kls, lengths, no_eos, per_reward, samples = [], [], [], [], {}, []
    columns = [c for c in dataset.column_names if c != "prompt"]
    prompts_per_batch = max(1, batch_size // num_generations)
    with seeded(seed):
        for start in range(0, len(dataset), prompts_per_batch):
            rows = dataset[start:start + prompts_per_batch]
            prompts = rows["prompt"]
            rollout = policy.sample(prompts, num_generations, reference=reference, temperature=temperature)
            repeated = [p for p in prompts for _ in range(num_generations)]
            extra = {c: [v for v in rows[c] for _ in range(num_generations)] for c in columns}
            total, named = reward_set(repeated, rollout.completions, extra)
            if eval_reward_set is not None:
                named = {**named, **eval_reward_set(repeated, rollout.completions, extra)[1]}
            kl_rollout = policy.sample(prompts, num_generations, reference=reference) if separate_kl else rollout
            kls.append(_kl(policy, kl_rollout, reference).float().cpu())
            scores.append(total.cpu())
            lengths.append(rollout.lengths.float().cpu())
            no_eos.append((~rollout.has_eos).float().cpu())
            for name, values in named.items():
                per_reward.setdefault(name, []).append(values.float().cpu())
            for i in range(0, len(rollout), num_generations):
                if len(samples) < num_samples_kept:
                    samples.append({"prompt": _prompt_text(repeated[i]), "completion": _describe(rollout.completions[i]),
                                    "reward": float(total[i])})
    per_prompt = lambda chunks: torch.cat(chunks).view(-1, num_generations).mean(-1)  # noqa: E731
    score, kl = per_prompt(scores), per_prompt(kls)
    named_per_prompt = {name: per_prompt(v) for name, v in per_reward.items()}
    return EvalResult(
        reward=float(score.mean()),
        reward_se=standard_error(score),
        kl=float(kl.mean()),
        kl_se=standard_error(kl),
        rewards={name: float(v.mean()) for name, v in named_per_prompt.items()},
        rewards_se={name: standard_error(v) for name, v in named_per_prompt.items()},
        mean_length=float(torch.cat(lengths).mean()),
        no_eos_fraction=float(torch.cat(no_eos).mean()),
        per_prompt_reward=score.tolist(),
        samples=samples,
        temperature=temperature,
        kl_temperature=policy.temperature,
    )


def _kl(policy: CausalLMPolicy, rollout, reference: bool) -> torch.Tensor:
    """log pi(y) - log pi_ref(y) per sample (zero for pi_ref itself)."""
    if reference:
        return torch.zeros(len(rollout))
    return policy.log_probs(rollout) - policy.log_probs(rollout, reference=True)


def paired_difference(before: EvalResult, after: EvalResult) -> tuple[float, float]:
    """Mean and standard error of the per-prompt reward change (same prompts before and after)."""
    diff = torch.tensor(after.per_prompt_reward) - torch.tensor(before.per_prompt_reward)
    return float(diff.mean()), standard_error(diff)


def _describe(completion: Any) -> Any:
    """A completion as kept in the result (JSON): text as it is, an image as `image CxHxW`."""
    if isinstance(completion, torch.Tensor):
        return "image " + "x".join(str(s) for s in completion.shape)
    return completion


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(m["content"] for m in prompt if m.get("role") == "user") or str(prompt)
    return str(prompt)
