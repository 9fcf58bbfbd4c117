"""Held-out evaluation: reward and KL(pi || pi_ref) on fixed prompts, with standard errors; for a
run with an environment, multi-turn episodes of each prompt (their return, success rate, turns)."""
from __future__ import annotations

import contextlib
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch

from ..errors import ConfigError
from ..policies.base import Policy
from .verifiable import is_verifier_score, verifier_metrics


@dataclass
class EvalResult:
    """Mean reward and KL with standard errors over prompts, per-prompt scores (for paired
    comparisons of two policies on the same prompts), a few samples.

    `rewards`/`rewards_se` hold each named reward (training rewards and evaluation-only ones such as
    a judge's win rate); `reward` is the weighted training reward the run optimises.
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
    # each named reward per prompt
    per_prompt_rewards: dict[str, list[float | None]] = field(default_factory=dict)
    temperature: float | None = None
    kl_temperature: float | None = None
    # pass@k and mean@k of each reward whose scores are all 0 or 1 (a verifier's): verifiable.py
    verified: dict[str, dict[str, float]] = field(default_factory=dict)
    # episodes only (None single-turn): mean return, share of episodes with return > 0, turns
    episode_return: float | None = None
    success_rate: float | None = None
    mean_turns: float | None = None

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


@dataclass(frozen=True)
class Shard:
    """This process's part of a multi-process evaluation: batches `index`, `index + count`, ...;
    `gather` concatenates a list of picklable objects from every process (accelerate's
    `gather_object`)."""

    index: int
    count: int
    gather: Callable[[list], list]


@dataclass(frozen=True)
class Episodes:
    """Evaluate by multi-turn episodes: `factory()` makes one fresh environment per episode,
    played within `max_turns` policy turns and `max_total_tokens` completion tokens
    (policies/multiturn.py)."""

    factory: Callable[[], Any]
    max_turns: int
    max_total_tokens: int


@torch.no_grad()
def evaluate(
    policy: Policy,
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
    shard: Shard | None = None,
    episodes: Episodes | None = None,
) -> EvalResult:
    """Sample `num_generations` completions per held-out prompt from the policy (or pi_ref) and
    score them.

    Scores (training rewards, plus `eval_reward_set`'s evaluation-only rewards such as a judge) are
    taken at `temperature` (default: the policy's; the paper evaluates at 0.01). KL(pi || pi_ref) is
    the Monte-Carlo estimate mean[log pi(y) - log pi_ref(y)], y ~ pi at the policy's own sampling
    temperature, from separate samples when `temperature` differs (a near-greedy temperature has no
    useful KL; pi_ref's is 0, so it gets none). Standard errors are over prompts (each prompt's
    samples averaged first), so they stay honest when samples of a prompt are correlated. A fixed
    `seed` gives every evaluation the same random numbers (for a given number of processes). With
    a `shard`, each process evaluates every count-th batch and all processes return the whole
    result.

    With `episodes`, each of a prompt's `num_generations` samples is one episode against a fresh
    environment reset with the prompt's row (all its columns): its score is the episode's return
    plus the rewards of its transcript (as in training, without the missing-EOS penalty, which
    single-turn evaluation leaves out too). Episodes are sampled at `temperature` too; their KL
    comes from separate episodes at the policy's temperature when it differs.
    """
    temperature = policy.temperature if temperature is None else temperature
    prompts_per_batch = max(1, batch_size // num_generations)
    starts = list(range(0, len(dataset), prompts_per_batch))
    index, count = (shard.index, shard.count) if shard else (0, 1)
    batches = []
    with seeded(None if seed is None else seed + index):
        # Every process runs the same number of batches (a sharded model's passes are collectives);
        # one that has run out repeats one of its batches and drops the result.
        for position in range(index, math.ceil(len(starts) / count) * count, count):
            start = starts[position] if position < len(starts) else starts[index % len(starts)]
            rows = dataset[start:start + prompts_per_batch]
            result = _evaluate_batch(
                policy,
                rows,
                reward_set,
                eval_reward_set,
                num_generations,
                temperature,
                reference,
                num_samples_kept,
                episodes,
            )
            if position < len(starts):
                batches.append((position, result))
    if shard:
        batches = sorted(shard.gather(batches), key=lambda item: item[0])
    return _aggregate(
        [result for _, result in batches],
        num_generations,
        num_samples_kept,
        temperature,
        policy.temperature,
    )


def _evaluate_batch(
    policy,
    rows,
    reward_set,
    eval_reward_set,
    num_generations: int,
    temperature: float,
    reference: bool,
    num_samples_kept: int,
    episodes: Episodes | None = None,
) -> dict[str, Any]:
    """One batch's per-sample scores, KLs, lengths and a few samples (on the CPU, picklable)."""
    prompts = rows["prompt"]
    if episodes is None:
        rollout = policy.sample(prompts, num_generations, reference=reference,
                                temperature=temperature)
    else:
        rollout = _play_episodes(policy, rows, num_generations, episodes, reference, temperature)
    repeated = [p for p in prompts for _ in range(num_generations)]
    extra = {
        c: [v for v in values for _ in range(num_generations)]
        for c, values in rows.items()
        if c != "prompt"
    }
    ids = (
        {"completion_ids": rollout.completion_token_ids()}
        if rollout.completion_token_ids() is not None
        else {}
    )
    total, named = reward_set(repeated, rollout.completions, extra, ids)
    episode = {}
    if episodes is not None:  # an episode: its return plus the rewards of its transcript
        returns = rollout.episode_rewards.float().cpu()
        total = total.float().cpu() + returns
        episode = {"return": returns, "turns": rollout.turns.float().cpu()}
    if eval_reward_set is not None:
        named = {**named, **eval_reward_set(repeated, rollout.completions, extra, ids)[1]}
    # pi_ref's KL to itself is 0 whatever it is sampled from: no separate samples for it
    separate_kl = not reference and abs(temperature - policy.temperature) > 1e-12
    kl_rollout = (
        rollout if not separate_kl
        else policy.sample(prompts, num_generations, reference=reference) if episodes is None
        else _play_episodes(policy, rows, num_generations, episodes, reference, None)
    )  # KL at the trained temperature, where the log-probs are taken
    samples = [
        {
            "prompt": _prompt_text(repeated[i]),
            "completion": policy.describe(rollout.completions[i]),
            "reward": float(total[i]),
        }
        for i in range(0, len(rollout), num_generations)
    ]
    return {"score": total.cpu(), "kl": _kl(policy, kl_rollout, reference).float().cpu(),
            "length": rollout.lengths.float().cpu(), "no_eos": (~rollout.has_eos).float().cpu(),
            "named": {name: values.float().cpu() for name, values in named.items()},
            "samples": samples[:num_samples_kept], **episode}


def _play_episodes(policy: Policy, rows: dict[str, list], num_generations: int,
                   episodes: Episodes, reference: bool, temperature: float | None = None):
    """`num_generations` episodes per prompt (consecutive), each against its own fresh
    environment, reset with the prompt's row as a dict of its columns."""
    sample = getattr(policy, "sample_episodes", None)
    if sample is None:
        raise ConfigError(f"{policy.supports.description} cannot play multi-turn episodes: "
                          "unset environment or evaluate a causal LM")
    columns = [dict(zip(rows, values)) for values in zip(*rows.values())]
    repeated = [c for c in columns for _ in range(num_generations)]
    return sample([c["prompt"] for c in repeated], repeated,
                  [episodes.factory() for _ in repeated], max_turns=episodes.max_turns,
                  max_total_tokens=episodes.max_total_tokens, reference=reference,
                  temperature=temperature)


def _aggregate(
    batches: list[dict[str, Any]],
    num_generations: int,
    num_samples_kept: int,
    temperature: float,
    kl_temperature: float,
) -> EvalResult:
    """Batches (in dataset order) into means and standard errors over prompts."""
    per_prompt = (
        lambda chunks: torch.cat(list(chunks)).view(-1, num_generations).mean(-1)
    )  # noqa: E731
    score, kl = per_prompt(b["score"] for b in batches), per_prompt(b["kl"] for b in batches)
    # A reward that returned None (not applicable) for a sample is averaged over the samples it
    # scored.
    named_per_prompt = {
        name: torch.cat([b["named"][name] for b in batches]).view(-1, num_generations).nanmean(-1)
        for name in batches[0]["named"]
    }
    return EvalResult(
        reward=float(score.mean()),
        reward_se=standard_error(score),
        kl=float(kl.mean()),
        kl_se=standard_error(kl),
        rewards={name: float(v.nanmean()) for name, v in named_per_prompt.items()},
        rewards_se={name: standard_error(v[~v.isnan()]) for name, v in named_per_prompt.items()},
        mean_length=float(torch.cat([b["length"] for b in batches]).mean()),
        no_eos_fraction=float(torch.cat([b["no_eos"] for b in batches]).mean()),
        per_prompt_reward=score.tolist(),
        per_prompt_rewards={name: [None if math.isnan(x) else x for x in v.tolist()]
                            for name, v in named_per_prompt.items()},
        samples=[sample for b in batches for sample in b["samples"]][:num_samples_kept],
        temperature=temperature,
        kl_temperature=kl_temperature,
        verified=_verified(batches, num_generations),
        **_episode_metrics(batches, num_generations),
    )


def _episode_metrics(batches: list[dict[str, Any]], num_generations: int) -> dict[str, Any]:
    """Mean return, success rate (share of episodes with return > 0) and mean turns of episode
    batches; nothing for single-turn ones. A 0/1 return also gets pass@k (verified["return"])."""
    if "return" not in batches[0]:
        return {}
    returns = torch.cat([b["return"] for b in batches])
    return {"episode_return": float(returns.mean()),
            "success_rate": float((returns > 0).float().mean()),
            "mean_turns": float(torch.cat([b["turns"] for b in batches]).mean())}


def _verified(batches: list[dict[str, Any]], num_generations: int) -> dict[str, dict[str, float]]:
    """pass@k and mean@k over prompts of each named reward that scored only 0 or 1."""
    verified = {}
    for name in batches[0]["named"]:
        values = torch.cat([b["named"][name] for b in batches]).view(-1, num_generations)
        if is_verifier_score(values):
            verified[name] = verifier_metrics(values)
    if "return" in batches[0]:  # an episode's return of 0 or 1 is a verdict too
        returns = torch.cat([b["return"] for b in batches]).view(-1, num_generations)
        if is_verifier_score(returns):
            verified["return"] = verifier_metrics(returns)
    return verified


def _kl(policy: Policy, rollout, reference: bool) -> torch.Tensor:
    """log pi(y) - log pi_ref(y) per sample (zero for pi_ref itself)."""
    if reference:
        return torch.zeros(len(rollout))
    return policy.log_probs(rollout) - policy.log_probs(rollout, reference=True)


def paired_difference(before: EvalResult, after: EvalResult) -> tuple[float, float]:
    """Mean and standard error of the per-prompt reward change (same prompts before and after)."""
    diff = torch.tensor(after.per_prompt_reward) - torch.tensor(before.per_prompt_reward)
    return float(diff.mean()), standard_error(diff)


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return " ".join(m["content"] for m in prompt if m.get("role") == "user") or str(prompt)
    return str(prompt)
