"""The reward-vs-KL frontier: every online method of the table run again at other KL coefficients
(`frontier_kl_coefs`, `frontier_seeds`), test win rate and RM score against the test KL(π‖π_sft);
the table's own runs are the points at `kl_coef`. A method that reaches a higher win rate at the
same KL is better whichever coefficient the table happened to use."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .config import CompareConfig, online_methods
from .jobs import method_job
from .results import label, metric, save_win_rm_figure


def frontier_jobs(config: CompareConfig) -> list[dict[str, Any]]:
    """One job per online method of the invocation, extra KL coefficient and frontier seed (test
    split)."""
    methods = [m for m in online_methods() if m in config.algorithms]
    return [
        method_job(
            config, m, s, overrides={"kl_coef": k}, name=f"{m}-kl{k:g}-seed{s}", paper_eval=False
        )
        for k in config.frontier_kl_coefs
        if k != config.kl_coef
        for s in config.frontier_seeds
        for m in methods
    ]


def frontier_points(results: list[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Per online method, one point per KL coefficient (ascending): the coefficient, the number of
    runs, and the means over them of test KL, RM score and win rate."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    online = online_methods()
    for r in results:
        if r["job"]["method"] in online:
            groups.setdefault((r["job"]["method"], r["job"]["config"]["kl_coef"]), []).append(r)
    points: dict[str, list[dict[str, float]]] = {}
    ordered = sorted(groups.items(), key=lambda kv: (online.index(kv[0][0]), kv[0][1]))
    for (method, coef), runs in ordered:
        points.setdefault(method, []).append(
            {
                "kl_coef": coef,
                "runs": len(runs),
                "kl": statistics.fmean(r["evaluation"]["kl"] for r in runs),
                "rm": statistics.fmean(metric(r, "reward_model") for r in runs),
                "win": statistics.fmean(metric(r, "tldr_win_rate") for r in runs),
            }
        )
    return points


def plot_frontier(points: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Test win rate and RM score against test KL, one line per method through its KL
    coefficients."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, line in points.items():
        for ax, key, scale in [(axes[0], "win", 100), (axes[1], "rm", 1)]:
            ax.plot(
                [p["kl"] for p in line],
                [scale * p[key] for p in line],
                marker="o",
                label=label(method),
            )
    save_win_rm_figure(fig, axes, path, "test KL(π‖π_sft)", "test")


def frontier_table(points: dict[str, list[dict[str, float]]]) -> list[str]:
    """Markdown rows: per method and KL coefficient, win rate / RM score / KL and the number of
    runs."""
    rows = [
        "| Method | kl_coef | runs | Win rate (%) | RM score | KL(π‖π_sft) |",
        "|---|---|---|---|---|---|",
    ]
    for method, line in points.items():
        rows += [
            f"| {label(method)} | {p['kl_coef']:g} | {p['runs']} | {100 * p['win']:.1f} | "
            f"{p['rm']:.3f} | "
            f"{p['kl']:.2f} |"
            for p in line
        ]
    return rows
