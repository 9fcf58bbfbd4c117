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

from ..config import RebelConfig, completion_columns
from ..data.pairs import _is_completion
from ..errors import DataError
from ..policies.base import Rollout, concat_rollouts
from ..policies.offline import rollout_from_text

NORMALIZATION_EPS = 1e-4


def check_completion_columns(dataset, config: RebelConfig) -> None:
    """DataError (one line) if the training data lacks a completion column the config reads, or holds a
    value that is neither text nor a list of messages."""
    for column in completion_columns(config):
        if column not in dataset.column_names:
            raise DataError(
                f"pair_source {config.pair_source} reads completions from column {column!r}, which dataset "
                f"'{config.dataset}' lacks (columns: {', '.join(dataset.column_names)}): set --completion_columns "
                "(builtin:tldr_sft has completion; builtin:tldr_preferences has chosen,rejected)")
        for index, value in enumerate(dataset[column]):
            if not _is_completion(value):
                raise DataError(f"dataset '{config.dataset}' row {index}: {column} must be a string or a list of "
                                f"{{'role', 'content'}} messages, got {value!r:.80}")


def collect_rollout(policy, rows: dict[str, list], config: RebelConfig) -> Rollout:
    """The iteration's Rollout, n consecutive rows per prompt: first the n - k samples from pi_t, then the
    prompt's k dataset completions in `completion_columns` order."""
    n, prompts = config.num_generations, rows["prompt"]
    columns = completion_columns(config)
    samples = n - len(columns)
    parts = [policy.sample(prompts, samples)] if samples else []
    parts += [rollout_from_text(policy, prompts, rows[column]) for column in columns]
    if len(parts) == 1:
        return parts[0]
    merged = concat_rollouts(parts, policy.tokenizer.pad_token_id)
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
    mean, std = grouped.mean(-1, keepdim=True), grouped.std(-1, keepdim=True)
    return ((grouped - mean) / (std + NORMALIZATION_EPS)).flatten()


def queries_per_iteration(config: RebelConfig, num_rows: int, preference: bool) -> int:
    """Completions scored for the training signal: every row for rewards; with a preference, each of the
    n(n-1)/2 compared pairs per prompt reads two completions (so n = 2 also counts 2 per prompt)."""
    n = config.num_generations
    return num_rows // n * n * (n - 1) if preference else num_rows
