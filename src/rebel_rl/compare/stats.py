"""Pure statistics of the comparison: a paired bootstrap over prompts and seeds (numpy only)."""
from __future__ import annotations

import numpy as np


def paired_bootstrap(diffs: np.ndarray, *, resamples: int = 4000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences `diffs` (seeds x prompts: method minus baseline on the same
    prompt, seed and evaluation samples) and its bootstrap confidence interval at `level`.

    Each resample draws seeds and prompts independently with replacement (a two-way bootstrap:
    prompts are shared across seeds, so both sources of variation count) and takes the mean over the
    drawn rows and columns; the interval is the resamples' percentile interval. Returns (mean, low,
    high).
    """
    diffs = np.asarray(diffs, dtype=float)
    if diffs.ndim != 2 or diffs.size == 0:
        raise ValueError(
            f"diffs must be a non-empty seeds x prompts array, got shape {diffs.shape}"
        )
    seeds, prompts = diffs.shape
    rng = np.random.default_rng(seed)
    # counts of each seed and prompt in each resample: the resample mean is w_s . diffs . w_p / (S
    # P)
    seed_counts = rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=resamples)
    prompt_counts = rng.multinomial(prompts, np.full(prompts, 1 / prompts), size=resamples)
    means = np.einsum("bs,sp,bp->b", seed_counts, diffs, prompt_counts) / (seeds * prompts)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(diffs.mean()), float(low), float(high)


def verdict(low: float, high: float) -> str:
    """'higher' if the interval lies above 0, 'lower' if below, else 'tie'."""
    return "higher" if low > 0 else "lower" if high < 0 else "tie"
