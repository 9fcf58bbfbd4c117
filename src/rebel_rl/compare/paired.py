"""The table's paired comparison against REBEL: per-prompt differences on the same test prompts,
seeds and evaluation random numbers, with a bootstrap 95% CI over prompts and seeds (stats.py)."""
from __future__ import annotations

from typing import Any

import numpy as np

from .results import by_method, label
from .stats import paired_bootstrap, verdict

BASELINE = "rebel"
# what each column compares: (reward name in the evaluation, scale, format)
PAIRED = {
    "Win rate Δ (points)": ("tldr_win_rate", 100, "{:+.1f}"),
    "RM score Δ": ("reward_model", 1, "{:+.3f}"),
}
WORDS = {"higher": "REBEL loses", "lower": "REBEL wins", "tie": "tie"}


def per_prompt(result: dict[str, Any], name: str) -> np.ndarray:
    """Reward `name` per test prompt (each the mean over its evaluation samples) of one job's
    result."""
    values = result["evaluation"].get("per_prompt_rewards", {}).get(name)
    if values is None:
        raise ValueError(
            f"{result['job']['name']}: its evaluation has no per-prompt {name} (re-run the job)"
        )
    return np.asarray(values, dtype=float)


def paired_differences(
    runs: list[dict[str, Any]], baseline: list[dict[str, Any]], name: str
) -> np.ndarray:
    """seeds x prompts: `runs` minus `baseline` on reward `name`, paired by seed (the seeds both
    have)."""
    mine = {r["job"]["seed"]: per_prompt(r, name) for r in runs}
    theirs = {r["job"]["seed"]: per_prompt(r, name) for r in baseline}
    seeds = sorted(set(mine) & set(theirs))
    return np.stack([mine[s] - theirs[s] for s in seeds])


def paired_table(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: each method against REBEL, mean paired difference [95% CI] per column and a
    verdict from the win-rate interval (REBEL wins / tie / REBEL loses); [] without REBEL in the
    results."""
    grouped = by_method(results)
    if BASELINE not in grouped:
        return []
    rows = [
        "| Method | seeds | "
        + " | ".join(f"{c} [95% CI]" for c in PAIRED)
        + " | REBEL (win rate) |",
        "|---|---|" + "---|" * (len(PAIRED) + 1),
    ]
    for method, runs in grouped.items():
        if method == BASELINE:
            continue
        cells, words = [], []
        for name, scale, fmt in PAIRED.values():
            diffs = scale * paired_differences(runs, grouped[BASELINE], name)
            mean, low, high = paired_bootstrap(diffs)
            cells.append(f"{fmt.format(mean)} [{fmt.format(low)}, {fmt.format(high)}]")
            words.append(WORDS[verdict(low, high)])
        rows.append(f"| {label(method)} | {len(diffs)} | {' | '.join(cells)} | {words[0]} |")
    return rows
