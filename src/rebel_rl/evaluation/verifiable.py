"""Metrics of verifiable rewards (a score of 0 or 1 per sample): pass@k, mean@k, and the share of
prompts whose samples all scored the same.

pass@k is the unbiased estimator of Chen et al. (2021, arXiv 2107.03374): with n samples of a prompt
of which c are correct, pass@k = 1 - C(n - c, k) / C(n, k), the chance that k samples drawn without
replacement hold at least one correct one; mean@k is the mean score over the k samples (accuracy).
"""
from __future__ import annotations

from math import comb

import torch


def pass_at_k(correct: int, samples: int, k: int) -> float:
    """Unbiased pass@k of one prompt with `correct` of `samples` correct (k <= samples)."""
    if not 0 < k <= samples:
        raise ValueError(f"k must be in 1..{samples}; got {k}")
    if samples - correct < k:
        return 1.0
    return 1.0 - comb(samples - correct, k) / comb(samples, k)


def is_verifier_score(values: torch.Tensor) -> bool:
    """Whether every scored value (NaN = not scored) is 0 or 1: a verifier's verdicts."""
    scored = values[~values.isnan()]
    return scored.numel() > 0 and bool(((scored == 0) | (scored == 1)).all())


def report_ks(samples: int) -> list[int]:
    """The k of pass@k to report for `samples` per prompt: 1, 2, 4, ... and `samples` itself."""
    ks = [1 << i for i in range(samples.bit_length()) if 1 << i < samples]
    return ks + [samples]


def verifier_metrics(per_sample: torch.Tensor) -> dict[str, float]:
    """pass@k and mean@k (mean over prompts) of a (prompts, samples) tensor of 0/1 verdicts, for
    each k of `report_ks`; prompts with an unscored (NaN) sample are left out."""
    rows = per_sample[~per_sample.isnan().any(-1)]
    samples = per_sample.shape[-1]
    if rows.numel() == 0:
        return {}
    correct = rows.sum(-1).long().tolist()
    metrics = {}
    for k in report_ks(samples):
        metrics[f"pass@{k}"] = sum(pass_at_k(c, samples, k) for c in correct) / len(correct)
    metrics[f"mean@{samples}"] = float(rows.mean())
    return metrics


def identical_score_fraction(scores: torch.Tensor, samples: int) -> float:
    """The share of prompts (rows of `samples` consecutive scores) whose samples all scored alike.

    For REBEL, a pair with equal scores regresses the pair's log-ratio difference onto zero (or onto
    the KL term's difference): it carries no reward signal, only a pull towards pi_t.
    """
    if samples < 2 or scores.numel() == 0:
        return 0.0
    groups = scores.reshape(-1, samples)
    return float((groups == groups[:, :1]).all(-1).float().mean())
