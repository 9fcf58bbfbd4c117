"""How an iteration's pairs are built (REBEL's extensions, docs/extensions/): where each prompt's n
completions come from, which pairs the loss regresses, and how rewards are normalised.

- `pair_source`: `online` samples all n from pi_t; `hybrid` samples n - k and appends the k dataset
  completions of `completion_columns` (the reference summary, say); `offline` takes all n from the
  dataset (chosen and rejected, say). Dataset completions become Rollout rows through
  `rollout_from_text`, so their log pi_t, log pi_ref, KL and reward are computed exactly as for samples
  (they are reward queries like any sample), and they always end with EOS.
- `pairing`: `all` pairs i < j (rebel_loss), or `best_worst`: per prompt the highest- against the
  lowest-reward completion, as the authors did for their large-batch Llama-3 runs.
- `reward_normalization`: `none` (the paper), `prompt` or `batch`: (r - mean) / (std + 1e-4) per prompt
  or over the batch. A per-prompt shift never changes REBEL's reward differences; the scale acts like eta.
"""
from __future__ import annotations

import torch

from ...algorithms.grpo import standardise_groups
from ...config import DataConfig
from ...data.pairs import _is_completion
from ...errors import DataError
from ...policies.base import Policy, Rollout


def check_completion_columns(dataset, config: DataConfig) -> None:
    """DataError (one line) if the training data lacks a completion column the data group reads, or holds a
    value that is neither text nor a list of messages."""
    for column in config.written_columns():
        if column not in dataset.column_names:
            raise DataError(
                f"pair_source {config.pair_source} reads completions from column {column!r}, which dataset "
                f"'{config.dataset}' lacks (columns: {', '.join(dataset.column_names)}): set --completion_columns "
                "(builtin:tldr_sft has completion; builtin:tldr_preferences has chosen,rejected)")
        for index, value in enumerate(dataset[column]):
            if not _is_completion(value):
                raise DataError(f"dataset '{config.dataset}' row {index}: {column} must be a string or a list of "
                                f"{{'role', 'content'}} messages, got {value!r:.80}")


def collect_rollout(policy: Policy, rows: dict[str, list], n: int, config: DataConfig) -> Rollout:
    """The iteration's Rollout, n consecutive rows per prompt: first the n - k samples from pi_t, then the
    prompt's k dataset completions in `completion_columns` order."""
    prompts = rows["prompt"]
    columns = config.written_columns()
    samples = n - len(columns)
    parts = [policy.sample(prompts, samples)] if samples else []
    parts += [policy.rollout_from_text(prompts, rows[column]) for column in columns]
    if len(parts) == 1:
        return parts[0]
    merged = policy.concat(parts)
    return merged.select(interleave_order(len(prompts), samples, len(columns)))


def interleave_order(num_prompts: int, samples: int, written: int) -> torch.Tensor:
    """Row order that groups [samples (num_prompts * samples rows, grouped by prompt); column 1 (num_prompts
    rows); ...; column k] into n = samples + written consecutive rows per prompt."""
    prompt = torch.arange(num_prompts)[:, None]
    sampled = prompt * samples + torch.arange(samples)
    dataset = num_prompts * samples + torch.arange(written) * num_prompts + prompt
    return torch.cat([sampled, dataset], dim=1).flatten()


def best_worst_rows(reward: torch.Tensor, n: int) -> torch.Tensor:
    """Row indices (2 per prompt: best, then worst) of each prompt's highest- and lowest-reward completion
    among its n consecutive rows; the worst is chosen among the others, so a tie still gives two rows."""
    grouped = reward.view(-1, n)
    best = grouped.argmax(-1)
    others = grouped.scatter(1, best[:, None], float("inf"))
    worst = others.argmin(-1)
    base = torch.arange(grouped.shape[0], device=reward.device) * n
    return torch.stack([base + best, base + worst], dim=1).flatten()


def normalize_rewards(reward: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """`reward` (N,) as is (`none`), or standardised per prompt (its n consecutive rows) or over the batch."""
    if mode == "none":
        return reward
    grouped = reward.view(-1, n) if mode == "prompt" else reward.view(1, -1)
    return standardise_groups(grouped).flatten()
