"""A comparison's results read back: the table in the paper's format, per-seed learning curves and
their plots. report.py (results.md, tuning.md) and extension_report.py (another section) both use
them."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from ..config.algorithms import algorithm_names, algorithm_spec
from .config import all_methods
from .extensions import LABELS as EXTENSION_LABELS

OFFLINE_LABELS = {"sft": "SFT", "dpo": "DPO"}


def label(method: str) -> str:
    """The name of `method` in tables and plots: an online algorithm's registry label, an offline
    stage's or an extension's own."""
    if method in algorithm_names():
        return algorithm_spec(method).label or method
    return {**OFFLINE_LABELS, **EXTENSION_LABELS}.get(method, method)

# column -> (how to read it from a result, higher is better?, format)
COLUMNS = {
    "Win rate (%)": (lambda r: 100 * metric(r, "tldr_win_rate"), True, "{:.1f}"),
    "RM score": (lambda r: metric(r, "reward_model"), True, "{:.3f}"),
    "KL(π‖π_sft)": (lambda r: r["evaluation"]["kl"], False, "{:.2f}"),
}


def metric(result: dict[str, Any], name: str) -> float:
    """The test-evaluation mean of reward `name` in one job's result."""
    return result["evaluation"]["rewards"][name]


def by_method(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Results grouped by method (one per seed), the methods in all_methods() order."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(result["job"]["method"], []).append(result)
    order = all_methods()
    return dict(sorted(grouped.items(), key=lambda kv: order.index(kv[0])))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def results_table(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: mean ± std over seeds; best in bold, second underlined (SFT's KL of 0 not
    ranked)."""
    grouped = by_method(results)
    cells: dict[str, dict[str, str]] = {m: {} for m in grouped}
    for column, (read, higher, fmt) in COLUMNS.items():
        means = {}
        for method, runs in grouped.items():
            mean, std = _mean_std([read(r) for r in runs])
            cells[method][column] = f"{fmt.format(mean)} ± {fmt.format(std)}"
            if not (method == "sft" and column.startswith("KL")):
                means[method] = mean
            else:
                cells[method][column] = "–"
        ranked = sorted(means, key=means.get, reverse=higher)
        for place, method in enumerate(ranked[:2]):
            cells[method][column] = (
                f"**{cells[method][column]}**" if place == 0 else f"<u>{cells[method][column]}</u>"
            )
    header = [
        "Method",
        *COLUMNS,
        "Judge score",
        "Win rate (%) at T=0.01",
        "Reward queries",
        "Train time (s)",
        "Peak memory (MB)",
    ]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, runs in grouped.items():
        judge = _mean_std([metric(r, "tldr_judge") for r in runs])
        paper = _mean_std(
            [100 * r["extra_evaluations"][0]["rewards"]["tldr_win_rate"] for r in runs]
        )
        extra = [
            f"{judge[0]:.2f} ± {judge[1]:.2f}",
            f"{paper[0]:.1f} ± {paper[1]:.1f}",
            f"{statistics.fmean(r['reward_queries'] for r in runs):,.0f}",
            f"{statistics.fmean(r['train_seconds'] for r in runs):.0f}",
            f"{statistics.fmean(r['peak_memory_mb'] for r in runs):.0f}",
        ]
        rows.append(
            "| " + " | ".join([label(method), *(cells[method][c] for c in COLUMNS), *extra]) + " |"
        )
    return rows


def curves(results: list[dict[str, Any]]) -> dict[str, list[list[dict[str, float]]]]:
    """Per online method, per seed: validation points (reward queries, win rate, RM score, KL),
    starting from the SFT model's own validation result at 0 queries."""
    out: dict[str, list[list[dict[str, float]]]] = {}
    for method, runs in by_method(results).items():
        if method in ("sft", "dpo"):
            continue
        for run in runs:
            folder = Path(run["job"]["dir"])
            before = json.loads((folder / "eval_before.json").read_text())
            points = [{"queries": 0, "win": before["rewards"]["tldr_win_rate"],
                       "rm": before["rewards"]["reward_model"], "kl": 0.0}]
            for line in (folder / "metrics.jsonl").read_text().splitlines():
                record = json.loads(line) if line.strip() else {}
                if "eval/tldr_win_rate" in record:
                    points.append(
                        {
                            "queries": record["reward_queries"],
                            "win": record["eval/tldr_win_rate"],
                            "rm": record["eval/reward_model"],
                            "kl": record["eval/kl"],
                        }
                    )
            out.setdefault(method, []).append(points)
    return out


def plot_learning_curves(data: dict[str, list[list[dict[str, float]]]], path: Path) -> None:
    """Validation win rate and RM score against reward queries: mean over seeds, band = ± std."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method, seeds in data.items():
        length = min(len(s) for s in seeds)
        x = np.array([p["queries"] for p in seeds[0][:length]])
        for ax, key, scale in [(axes[0], "win", 100), (axes[1], "rm", 1)]:
            y = np.array([[p[key] * scale for p in s[:length]] for s in seeds])
            ax.plot(x, y.mean(0), label=label(method))
            ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.15)
    save_win_rm_figure(fig, axes, path, "reward queries", "validation")


def save_win_rm_figure(fig: Any, axes: Any, path: Path, xlabel: str, split: str) -> None:
    """Label a two-panel figure (win rate in %, RM score; one line per method), save it and close
    it."""
    import matplotlib.pyplot as plt

    axes[0].set(xlabel=xlabel, ylabel=f"{split} win rate vs reference (%)")
    axes[1].set(xlabel=xlabel, ylabel=f"{split} RM score")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reward_vs_kl(
    data: dict[str, list[list[dict[str, float]]]], path: Path, bins: int = 8
) -> None:
    """RM score and judge win rate against KL(pi || pi_sft), every validation point binned by KL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [
        (p["kl"], p["rm"], p["win"], m) for m, seeds in data.items() for s in seeds for p in s
    ]
    edges = np.quantile([p[0] for p in points], np.linspace(0, 1, bins + 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in data:
        mine = np.array([p[:3] for p in points if p[3] == method])
        which = np.clip(np.searchsorted(edges, mine[:, 0], side="right") - 1, 0, bins - 1)
        rows = [mine[which == b].mean(0) for b in range(bins) if (which == b).any()]
        rows = np.array(rows)
        axes[0].plot(rows[:, 0], rows[:, 1], marker="o", label=label(method))
        axes[1].plot(rows[:, 0], 100 * rows[:, 2], marker="o", label=label(method))
    axes[0].set(xlabel="KL(π‖π_sft), binned", ylabel="validation RM score")
    axes[1].set(xlabel="KL(π‖π_sft), binned", ylabel="validation win rate vs reference (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
