"""How an iteration's pairs are built (REBEL's extensions, docs/extensions/): where each prompt's n
completions come from, which pairs the loss regresses, and how rewards are normalised.

- `pair_source`: `online` samples all n from pi_t; `hybrid` samples n - k and appends the k dataset
  completions of `completion_columns` (the reference summary, say); `offline` takes all n from the
  dataset (chosen and rejected, say). Dataset completions become Rollout rows through
  `rollout_from_text`, so their log pi_t, log pi_ref, KL and reward are computed exactly as for
  samples (they are reward queries like any sample), and they always end with EOS.
- `pairing`: `all` pairs i < j (rebel_loss), or `best_worst`: per prompt the highest- against the
  lowest-reward completion, as the authors did for their large-batch Llama-3 runs.
- `reward_normalization`: `none` (the paper), `prompt` or `batch`: (r - mean) / (std + 1e-4) per
  prompt or over the batch. A per-prompt shift never changes REBEL's reward differences; the scale
  acts like eta.
"""
from __future__ import annotations

from typing import Any, Callable

import torch

from ...algorithms.grpo import standardise_groups
from ...config import DataConfig, RebelConfig, algorithm_spec
from ...config.run import EnvironmentConfig
from ...data.pairs import _is_completion
from ...errors import ConfigError, DataError
from ...policies.base import Policy, Rollout, SampleHandle


def check_completion_columns(dataset, config: DataConfig) -> None:
    """DataError (one line) if the training data lacks a completion column the data group reads, or
    holds a value that is neither text nor a list of messages."""
    for column in config.written_columns():
        if column not in dataset.column_names:
            raise DataError(
                f"pair_source {config.pair_source} reads completions from column {column!r}, which "
                f"dataset '{config.dataset}' lacks (columns: {', '.join(dataset.column_names)}): "
                "set --completion_columns (builtin:tldr_sft has completion; "
                "builtin:tldr_preferences has chosen,rejected)")
        for index, value in enumerate(dataset[column]):
            if not _is_completion(value):
                raise DataError(f"dataset '{config.dataset}' row {index}: {column} must be a "
                                f"string or a list of {{'role', 'content'}} messages, got "
                                f"{value!r:.80}")


def collect_rollout(policy: Policy, rows: dict[str, list], n: int, config: DataConfig,
                    environment_factory: Callable[[], Any] | None = None,
                    episodes: EnvironmentConfig | None = None, kind: str = "samples") -> Rollout:
    """The iteration's Rollout, n consecutive rows per prompt: first the n - k samples from pi_t,
    then the prompt's k dataset completions in `completion_columns` order. With an
    `environment_factory`, each of a prompt's n copies plays one multi-turn episode against its own
    fresh environment, within the limits of `episodes` (policies/multiturn.py); with `kind`
    "branched" (the algorithm's `AlgorithmSpec.rollout`, REFUEL's) the n episodes continue one
    shared prefix of a dialogue from a random turn, only that turn's response scored
    (`rollout_branches`)."""
    prompts = rows["prompt"]
    if environment_factory is not None:
        method = "sample_branches" if kind == "branched" else "sample_episodes"
        sample = getattr(policy, method, None)
        if sample is None:
            raise ConfigError(f"{policy.supports.description} cannot play multi-turn episodes: "
                              "unset environment or train a causal LM")
        columns = [dict(zip(rows, values)) for values in zip(*rows.values())]
        if kind == "branched":
            return sample(prompts, columns, environment_factory, n, max_turns=episodes.max_turns,
                          max_total_tokens=episodes.max_total_tokens)
        return sample([p for p in prompts for _ in range(n)],
                               [c for c in columns for _ in range(n)],
                               [environment_factory() for _ in range(len(prompts) * n)],
                               max_turns=episodes.max_turns,
                               max_total_tokens=episodes.max_total_tokens)
    columns = config.written_columns()
    samples = n - len(columns)
    parts = [policy.sample(prompts, samples)] if samples else []
    parts += [policy.rollout_from_text(prompts, rows[column]) for column in columns]
    if len(parts) == 1:
        return parts[0]
    merged = policy.concat(parts)
    return merged.select(interleave_order(len(prompts), samples, len(columns)))


def start_rollout(policy: Policy, rows: dict[str, list], n: int, config: DataConfig
                  ) -> SampleHandle:
    """`collect_rollout` of a single-turn batch started (async rollouts): its samples may be drawn
    in the background (`Policy.start_sample`); with dataset completions in it, all at once."""
    if config.written_columns():
        return SampleHandle(collect_rollout(policy, rows, n, config))
    return policy.start_sample(rows["prompt"], n)


def environment_factory(config: RebelConfig, environment: Any = None
                        ) -> Callable[[], Any] | None:
    """The factory of one fresh environment per episode: the `environment` object (a class or a
    zero-argument callable) or the `environment` spec of the config (loaded by
    rebel_rl.environments, with its time-outs); None for single-turn runs. ConfigError for what
    episodes cannot be combined with."""
    spec = environment if environment is not None else config.environment.environment
    algorithm = config.training.algorithm
    rollout = algorithm_spec(algorithm).rollout
    if spec is None:
        if rollout == "branched":
            raise ConfigError(f"algorithm {algorithm} branches multi-turn episodes: set "
                              "environment (a class, or --environment module:Class)")
        return None
    if rollout == "single_turn":
        raise ConfigError(f"algorithm {algorithm} trains on single-turn samples only: "
                          "unset environment or choose another algorithm")
    if config.sampling.generation_backend in ("vllm", "vllm_server"):
        raise ConfigError("multi-turn episodes sample with the hf backend only: set "
                          "generation_backend hf or unset environment")
    if config.data.pair_source != "online":
        raise ConfigError(f"multi-turn episodes are sampled online: set pair_source online (got "
                          f"{config.data.pair_source}) or unset environment")
    if not isinstance(spec, str):
        if not callable(spec):
            raise ConfigError(f"environment is a {type(spec).__name__} instance: pass its class or "
                              "a zero-argument callable that returns a fresh one per episode")
        return spec
    import importlib  # environments/ (the other layer 4) is optional here: imported when asked

    try:
        module = importlib.import_module("rebel_rl.environments")
    except ImportError:
        module = None
    make = getattr(module, "environment_factory", None)
    if make is not None:
        return make(config.environment)
    load = getattr(module, "load_environment", None)
    if load is None:
        raise ConfigError(f"environment {spec!r}: this install cannot load environment specs "
                          "(no rebel_rl.environments): pass the class as environment= instead")
    return load(spec)


def interleave_order(num_prompts: int, samples: int, written: int) -> torch.Tensor:
    """Row order that groups [samples (num_prompts * samples rows, grouped by prompt); column 1
    (num_prompts rows); ...; column k] into n = samples + written consecutive rows per prompt."""
    prompt = torch.arange(num_prompts)[:, None]
    sampled = prompt * samples + torch.arange(samples)
    dataset = num_prompts * samples + torch.arange(written) * num_prompts + prompt
    return torch.cat([sampled, dataset], dim=1).flatten()


def best_worst_rows(reward: torch.Tensor, n: int) -> torch.Tensor:
    """Row indices (2 per prompt: best, then worst) of each prompt's highest- and lowest-reward
    completion among its n consecutive rows; the worst is chosen among the others, so a tie still
    gives two rows."""
    grouped = reward.view(-1, n)
    best = grouped.argmax(-1)
    others = grouped.scatter(1, best[:, None], float("inf"))
    worst = others.argmin(-1)
    base = torch.arange(grouped.shape[0], device=reward.device) * n
    return torch.stack([base + best, base + worst], dim=1).flatten()


def normalize_rewards(reward: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """`reward` (N,) as is (`none`), or standardised per prompt (its n consecutive rows) or over the
    batch."""
    if mode == "none":
        return reward
    grouped = reward.view(-1, n) if mode == "prompt" else reward.view(1, -1)
    return standardise_groups(grouped).flatten()
