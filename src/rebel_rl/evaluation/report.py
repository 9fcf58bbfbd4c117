"""Human-readable outputs: the before/after table (terminal and markdown) and the reward/KL plot."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .heldout import EvalResult, paired_difference


def before_after_markdown(before: EvalResult, after: EvalResult, label: str) -> str:
    """A markdown table of reward and KL before and after training on `label` prompts, plus
    samples."""
    delta, delta_se = paired_difference(before, after)
    lines = [
        f"Evaluation on {label} (mean +/- standard error over prompts).",
        "",
        "| | reward | KL(pi &#124;&#124; pi_ref) | mean length | no EOS |",
        "|---|---|---|---|---|",
        _row("before (pi_ref)", before),
        _row("after", after),
        "",
        f"Reward change (paired over prompts): {delta:+.3f} +/- {delta_se:.3f}"
        + (f" ({delta / delta_se:.1f} standard errors)" if delta_se > 0 else ""),
        "",
        *[f"- {line}" for line in per_reward_lines(before, after)],
        "",
        "| prompt | before | after |",
        "|---|---|---|",
    ]
    for b, a in zip(before.samples, after.samples):
        lines.append(f"| {_cell(b['prompt'])} | {_cell(b['completion'])} ({b['reward']:+.2f}) "
                     f"| {_cell(a['completion'])} ({a['reward']:+.2f}) |")
    return "\n".join(lines) + "\n"


def per_reward_lines(before: EvalResult, after: EvalResult) -> list[str]:
    """One line per named reward (training and evaluation-only): before -> after, mean +/- s.e.;
    for episodes also their return, success rate and turns, before -> after."""
    lines = [f"{name}: {before.rewards[name]:+.4f} +/- {before.rewards_se.get(name, 0):.4f} -> "
             f"{after.rewards[name]:+.4f} +/- {after.rewards_se.get(name, 0):.4f}"
             for name in after.rewards if name in before.rewards]
    for name, form in [("episode_return", "+.4f"), ("success_rate", ".1%"),
                       ("mean_turns", ".2f")]:
        old, new = getattr(before, name), getattr(after, name)
        if old is not None and new is not None:
            lines.append(f"{name}: {old:{form}} -> {new:{form}}")
    return lines


def print_before_after(before: EvalResult, after: EvalResult, label: str) -> None:
    """Print the before/after comparison as rich tables."""
    from rich.console import Console
    from rich.table import Table

    delta, delta_se = paired_difference(before, after)
    table = Table(title=f"Evaluation on {label} (mean ± s.e.)")
    for column in ["", "reward", "KL(pi||pi_ref)", "mean length", "no EOS"]:
        table.add_column(column)
    for name, result in [("before (pi_ref)", before), ("after", after)]:
        table.add_row(
            name,
            f"{result.reward:+.3f} ± {result.reward_se:.3f}",
            f"{result.kl:.3f} ± {result.kl_se:.3f}",
            f"{result.mean_length:.1f}",
            f"{result.no_eos_fraction:.0%}",
        )
    samples = Table(title="Side by side", show_lines=True)
    for column in ["prompt", "before", "after"]:
        samples.add_column(column, overflow="fold")
    for b, a in zip(before.samples, after.samples):
        samples.add_row(
            b["prompt"],
            f"{b['completion']} [{b['reward']:+.2f}]",
            f"{a['completion']} [{a['reward']:+.2f}]",
        )
    console = Console()
    console.print(table)
    ratio = f" = {delta / delta_se:.1f} s.e." if delta_se > 0 else ""
    console.print(f"reward change (paired): {delta:+.3f} ± {delta_se:.3f}{ratio}")
    for line in per_reward_lines(before, after):
        console.print(f"  {line}")
    console.print(samples)


def plot_reward_kl(metrics: list[dict[str, Any]], path: Path) -> None:
    """Save a PNG with the batch reward (± std) and the KL to pi_ref over iterations."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # training iterations, not the periodic eval/* records
    metrics = [m for m in metrics if "reward" in m]
    if not metrics:
        return
    steps = [m["iteration"] for m in metrics]
    reward = [m["reward"] for m in metrics]
    std = [m["reward_std"] for m in metrics]
    fig, (ax_reward, ax_kl) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_reward.plot(steps, reward, color="tab:blue")
    ax_reward.fill_between(
        steps,
        [r - s for r, s in zip(reward, std)],
        [r + s for r, s in zip(reward, std)],
        color="tab:blue",
        alpha=0.2,
    )
    ax_reward.set(xlabel="iteration", ylabel="reward (batch mean ± std)", title="reward")
    ax_kl.plot(steps, [m["kl"] for m in metrics], color="tab:red")
    ax_kl.set(xlabel="iteration", ylabel="log pi_t - log pi_ref", title="KL to reference")
    from matplotlib.ticker import MaxNLocator

    for ax in (ax_reward, ax_kl):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # iterations are whole numbers
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _row(name: str, result: EvalResult) -> str:
    return (
        f"| {name} | {result.reward:+.3f} ± {result.reward_se:.3f} | {result.kl:.3f} ± "
        f"{result.kl_se:.3f} "
        f"| {result.mean_length:.1f} | {result.no_eos_fraction:.0%} |"
    )


def _cell(text: str) -> str:
    return text.replace("|", "&#124;").replace("\n", " ").strip()
