"""tuning.md: the sweep's record (sweep.py) as one small heat-map per method (validation win rate
over learning rate x the method's knob, the chosen cell boxed) and a table of every cell."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import CompareConfig, all_methods, timestamp
from .results import label
from .tuned import knob_of, swept_methods


def plot_heatmap(
    method: str, cells: list[dict[str, Any]], chosen: dict[str, float], path: Path
) -> None:
    """Validation win rate (%) of each run cell; cells not run are blank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    knob = knob_of(method)[0]
    lrs = sorted({c["learning_rate"] for c in cells})
    knobs = sorted({c[knob] for c in cells})
    grid = np.full((len(knobs), len(lrs)), np.nan)
    for c in cells:
        grid[knobs.index(c[knob]), lrs.index(c["learning_rate"])] = 100 * c["win_rate"]
    fig, ax = plt.subplots(figsize=(1.1 + 0.75 * len(lrs), 0.9 + 0.45 * len(knobs)))
    ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", origin="lower", aspect="auto")
    for (row, col), value in np.ndenumerate(grid):
        if not np.isnan(value):
            ax.text(col, row, f"{value:.1f}", ha="center", va="center", fontsize=7,
                    color="black" if value >= np.nanmean(grid) else "white")
    row, col = knobs.index(chosen[knob]), lrs.index(chosen["learning_rate"])
    ax.add_patch(
        plt.Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2)
    )
    ax.set_xticks(range(len(lrs)), [f"{v:g}" for v in lrs], fontsize=7)
    ax.set_yticks(range(len(knobs)), [f"{v:g}" for v in knobs], fontsize=7)
    ax.set(xlabel="learning rate", ylabel=knob, title=label(method))
    ax.title.set_fontsize(9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_sweep_report(config: CompareConfig, record: dict[str, Any], wall_seconds: float) -> Path:
    """tuning.md and its heat-maps (tuning_METHOD.png) in `config.report_dir`."""
    folder = Path(config.report_dir)
    folder.mkdir(parents=True, exist_ok=True)
    budget = record["budget"]
    methods = sorted(record["chosen"], key=all_methods().index)
    cells = budget["coarse"] + budget["refine"]
    full = (
        "the full grid"
        if config.sweep_size == 3
        else "the reduced default; the full grid is --sweep_size 3 --sweep_refine 4"
    )
    text = [
        "# Sweep on the validation split: learning rate x each method's own knob",
        "",
        f"`rebel compare --sweep true --sweep_size {config.sweep_size} --sweep_refine "
        f"{config.sweep_refine}` "
        f"({config.model_size} model, seed {record['seed']}, the table's training budget; "
        f"{timestamp()}; "
        f"{wall_seconds / 60:.1f} min wall clock for this invocation, jobs finished by an earlier "
        f"one reused). "
        f"Every method gets the same tuning budget: {cells} cells = a {config.sweep_size} x "
        f"{config.sweep_size} "
        f"coarse grid, then {budget['refine']} cells of the fine grid nearest its best coarse cell "
        f"({full}). "
        f"A cell is judged by its win rate against the reference summaries on "
        f"{config.test_prompts} validation "
        f"posts x {config.eval_samples} summaries at temperature {config.eval_temperature:g}; the "
        f"best cell "
        "(boxed) is the method's setting in the table (tuned.json; src/rebel_rl/compare/tuned.py "
        "lists the axes "
        "and the settings not swept).",
        "",
        "| Method | knob | chosen learning rate | chosen knob | validation win rate (%) | cells |",
        "|---|---|---|---|---|---|",
    ]
    for method in methods:
        chosen, knob = record["chosen"][method], knob_of(method)[0]
        best = next(c for c in record["cells"][method]
                    if c["learning_rate"] == chosen["learning_rate"] and c[knob] == chosen[knob])
        text.append(
            f"| {label(method)} | {knob} | {chosen['learning_rate']:g} | {chosen[knob]:g} | "
            f"{100 * best['win_rate']:.1f} | {len(record['cells'][method])} |"
        )
    missing = [label(m) for m in swept_methods() if m not in record["chosen"]]
    if missing:
        text += [
            "",
            f"Not swept yet: {', '.join(missing)} (they keep the settings in tuned.py's BASE).",
        ]
    text.append("")
    for method in methods:
        plot_heatmap(
            method,
            record["cells"][method],
            record["chosen"][method],
            folder / f"tuning_{method}.png",
        )
        text.append(f"![{label(method)}](tuning_{method}.png)")
    text += [
        "",
        "Every cell (validation):",
        "",
        "| Method | learning rate | knob | stage | win rate (%) | RM score | KL |",
        "|---|---|---|---|---|---|---|",
    ]
    for method in methods:
        knob, cells_run = knob_of(method)[0], record["cells"][method]
        text += [
            f"| {label(method)} | {c['learning_rate']:g} | {knob} {c[knob]:g} | {c['stage']} | "
            f"{100 * c['win_rate']:.1f} | {c['reward_model']:.3f} | {c['kl']:.2f} |"
            for c in cells_run
        ]
    path = folder / "tuning.md"
    path.write_text("\n".join(text) + "\n")
    return path
