"""The comparison's report: the table in the paper's format, learning curves, the reward-vs-KL plot."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from .config import ALL_METHODS, CompareConfig, timestamp
from .extensions import LABELS as EXTENSION_LABELS
from .sections import write_section

LABELS = {"sft": "SFT", "dpo": "DPO", "iterative_dpo": "Iterative DPO", "ppo": "PPO", "reinforce": "REINFORCE",
          "rloo": "RLOO", "rebel": "REBEL", **EXTENSION_LABELS}
# column -> (how to read it from a result, higher is better?, format)
COLUMNS = {
    "Win rate (%)": (lambda r: 100 * _metric(r, "tldr_win_rate"), True, "{:.1f}"),
    "RM score": (lambda r: _metric(r, "reward_model"), True, "{:.3f}"),
    "KL(π‖π_sft)": (lambda r: r["evaluation"]["kl"], False, "{:.2f}"),
}


def _metric(result: dict[str, Any], name: str) -> float:
    return result["evaluation"]["rewards"][name]


def _by_method(results: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        grouped.setdefault(result["job"]["method"], []).append(result)
    return dict(sorted(grouped.items(), key=lambda kv: ALL_METHODS.index(kv[0])))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def results_table(results: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: mean ± std over seeds; best in bold, second underlined (SFT's KL of 0 not ranked)."""
    grouped = _by_method(results)
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
            cells[method][column] = f"**{cells[method][column]}**" if place == 0 else f"<u>{cells[method][column]}</u>"
    header = ["Method", *COLUMNS, "Judge score", "Win rate (%) at T=0.01", "Reward queries", "Train time (s)",
              "Peak memory (MB)"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method, runs in grouped.items():
        judge = _mean_std([_metric(r, "tldr_judge") for r in runs])
        paper = _mean_std([100 * r["extra_evaluations"][0]["rewards"]["tldr_win_rate"] for r in runs])
        extra = [f"{judge[0]:.2f} ± {judge[1]:.2f}", f"{paper[0]:.1f} ± {paper[1]:.1f}", f"{statistics.fmean(r['reward_queries'] for r in runs):,.0f}",
                 f"{statistics.fmean(r['train_seconds'] for r in runs):.0f}",
                 f"{statistics.fmean(r['peak_memory_mb'] for r in runs):.0f}"]
        rows.append("| " + " | ".join([LABELS[method], *(cells[method][c] for c in COLUMNS), *extra]) + " |")
    return rows


def curves(results: list[dict[str, Any]]) -> dict[str, list[list[dict[str, float]]]]:
    """Per online method, per seed: validation points (reward queries, win rate, RM score, KL), starting
    from the SFT model's own validation result at 0 queries."""
    out: dict[str, list[list[dict[str, float]]]] = {}
    for method, runs in _by_method(results).items():
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
                    points.append({"queries": record["reward_queries"], "win": record["eval/tldr_win_rate"],
                                   "rm": record["eval/reward_model"], "kl": record["eval/kl"]})
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
            ax.plot(x, y.mean(0), label=LABELS[method])
            ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.15)
    axes[0].set(xlabel="reward queries", ylabel="validation win rate vs reference (%)")
    axes[1].set(xlabel="reward queries", ylabel="validation RM score")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reward_vs_kl(data: dict[str, list[list[dict[str, float]]]], path: Path, bins: int = 8) -> None:
    """RM score and judge win rate against KL(pi || pi_sft), every validation point binned by KL."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [(p["kl"], p["rm"], p["win"], m) for m, seeds in data.items() for s in seeds for p in s]
    edges = np.quantile([p[0] for p in points], np.linspace(0, 1, bins + 1))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in data:
        mine = np.array([p[:3] for p in points if p[3] == method])
        which = np.clip(np.searchsorted(edges, mine[:, 0], side="right") - 1, 0, bins - 1)
        rows = [mine[which == b].mean(0) for b in range(bins) if (which == b).any()]
        rows = np.array(rows)
        axes[0].plot(rows[:, 0], rows[:, 1], marker="o", label=LABELS[method])
        axes[1].plot(rows[:, 0], 100 * rows[:, 2], marker="o", label=LABELS[method])
    axes[0].set(xlabel="KL(π‖π_sft), binned", ylabel="validation RM score")
    axes[1].set(xlabel="KL(π‖π_sft), binned", ylabel="validation win rate vs reference (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def stage_lines(stages: list[list[dict[str, Any]]]) -> list[str]:
    """What SFT and the reward model took and achieved."""
    (sft,), (reward_model,) = stages
    lines = []
    if sft is not None:
        lines.append(f"- SFT (from scratch on the reference summaries): {sft['train_seconds']:.0f} s, "
                     f"peak {sft['peak_memory_mb']:.0f} MB.")
    if reward_model is not None:
        results = reward_model["summary"].get("results", {})
        accuracy = ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in results.items() if "accuracy" in k
                             and isinstance(v, float))
        lines.append(f"- Reward model (Bradley-Terry, from the SFT model): {reward_model['train_seconds']:.0f} s; "
                     f"held-out {accuracy}.")
    return lines


def write_report(config: CompareConfig, results: list[dict[str, Any]], stages: list[list[dict[str, Any]]],
                 wall_seconds: float) -> Path:
    """results.md plus learning_curves.png and reward_vs_kl.png in `config.report_dir`. Only the section
    `config.report_section` of results.md is (re)written (sections.py); another section than the main table
    holds this invocation's methods (extension_report.py)."""
    folder = Path(config.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    if config.report_section != "main":
        from .extension_report import section_lines

        return write_section(folder / "results.md", config.report_section, section_lines(config, results, wall_seconds))
    data = curves(results)
    if data:
        plot_learning_curves(data, folder / "learning_curves.png")
        plot_reward_vs_kl(data, folder / "reward_vs_kl.png")
    jobs_total = sum(r["wall_seconds"] for r in results) + sum(s[0]["wall_seconds"] for s in stages if s[0])
    lines = [
        "# TL;DR-style comparison (built-in task)", "",
        f"Generated by `rebel compare` ({config.model_size} model, seeds {', '.join(map(str, config.seeds))}) "
        f"on {timestamp()}: {wall_seconds / 60:.1f} min wall clock for this invocation ({jobs_total / 60:.1f} min "
        f"of job time in {config.workers} parallel workers; jobs finished by an earlier invocation are reused).", "",
        *results_table(results), "",
        f"Mean ± std over {len(config.seeds)} seeds; best in bold, second underlined. Win rate: the gold judge "
        f"compares each policy summary with the reference summary on {config.test_prompts} test posts x "
        f"{config.eval_samples} summaries (ties count half), sampled at temperature {config.eval_temperature}. RM score: the learned "
        f"reward model on the same summaries. KL(π‖π_sft): mean log-ratio over samples drawn at the training "
        f"temperature {config.temperature}. Online methods share one budget: {config.num_iterations} iterations "
        f"x {config.prompts_per_iteration} prompts x {config.num_generations} samples = "
        f"{config.num_iterations * config.prompts_per_iteration * config.num_generations:,} reward queries, "
        f"reward = RM score − {config.kl_coef} · KL(π_t‖π_sft) − {config.missing_eos_penalty} · [no EOS]. "
        "DPO trains offline on the preference pairs (no reward queries). Settings per method: "
        "src/rebel_rl/compare/tuned.py, chosen on the validation split (tuning.md).", "",
        "Stages shared by every method:", *stage_lines(stages), "",
    ]
    if data:
        lines += ["![learning curves](learning_curves.png)", "",
                  "Validation (64 posts) win rate and RM score against reward queries; mean over seeds, band ± std.", "",
                  "![reward vs KL](reward_vs_kl.png)", "",
                  "Every validation point of every run and seed, binned by KL(π‖π_sft) (equal-count bins).", ""]
    return write_section(folder / "results.md", "main", lines)


def write_sweep_report(config: CompareConfig, results: list[dict[str, Any]]) -> Path:
    """tuning.md: validation win rate and RM score per method and learning rate; the best rate in bold."""
    folder = Path(config.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["| Method | learning rate | validation win rate (%) | validation RM score | KL |", "|---|---|---|---|---|"]
    for method, runs in _by_method(results).items():
        best = max(runs, key=lambda r: _metric(r, "tldr_win_rate"))
        for run in runs:
            lr = run["job"]["config"]["learning_rate"]
            cell = f"{lr:g}" if run is not best else f"**{lr:g}**"
            rows.append(f"| {LABELS[method]} | {cell} | {100 * _metric(run, 'tldr_win_rate'):.1f} | "
                        f"{_metric(run, 'reward_model'):.3f} | {run['evaluation']['kl']:.2f} |")
    text = ["# Learning-rate sweep on the validation split", "",
            f"`rebel compare --sweep true` ({config.model_size} model, seed {config.seeds[0]}, the same budget as the "
            f"table; evaluated on {config.test_prompts} validation posts x {config.eval_samples} summaries at "
            f"temperature {config.eval_temperature:g}, {timestamp()}). Bold: the rate with the best validation win "
            "rate, used in src/rebel_rl/compare/tuned.py. Only the learning rate is swept; the other settings "
            "there are fixed by hand (PPO and REBEL 2 epochs, the policy gradients 1, 2 minibatches each).",
            "", *rows, ""]
    path = folder / "tuning.md"
    path.write_text("\n".join(text))
    return path
