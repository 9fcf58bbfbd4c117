"""Issue 22 item 6: REFUEL vs REBEL on whole episodes vs GRPO on builtin:guess_number, per seed.

Every method gets the same prompts per iteration, samples per prompt and iterations; the
environment steps each used are measured (metrics.jsonl's environment/turns) and are the curves'
x-axis. Held-out success rate, turns and KL per seed; differences against REBEL are paired by seed
and test prompt with compare/stats.py's bootstrap CI.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/multiturn_study.py --seeds 3 --iterations 40
    ... --quick --model PATH   # 1 seed, 1 iteration, fewest episodes: a smoke of the pipeline

Writes docs/multiturn_study.png and the table between the markers in docs/multiturn.md.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from rebel_rl import RebelConfig
from rebel_rl.compare.sections import write_section
from rebel_rl.compare.stats import paired_bootstrap
from rebel_rl.training.online.loop import RebelTrainer
from rebel_rl.training.run.outputs import read_metrics

ROOT = Path(__file__).resolve().parents[1]
DOC, PLOT = ROOT / "docs" / "multiturn.md", ROOT / "docs" / "multiturn_study.png"
METHODS = ("rebel", "refuel", "grpo")


def run_one(method: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    """Train `method` with `seed`; its eval result after training, curve and seconds/iteration."""
    config = RebelConfig(
        model_name_or_path=args.model, algorithm=method, environment="builtin:guess_number",
        dataset="builtin:guess_number", eval_dataset="builtin:guess_number", rewards=[],
        num_iterations=args.iterations, prompts_per_iteration=args.prompts,
        num_generations=args.generations, eval_prompts=args.eval_prompts, max_new_tokens=8,
        max_turns=4, max_total_tokens=96, seed=seed, progress=False, tensorboard=False,
        save_every=0, output_dir=str(out / f"{method}-{seed}"), overwrite=True)
    start = time.perf_counter()
    summary = RebelTrainer(config).train()
    seconds = (time.perf_counter() - start) / args.iterations
    samples = args.prompts * args.generations
    steps = np.cumsum([m["environment/turns"] * samples for m in read_metrics(
        Path(config.output_dir)) if "environment/turns" in m]).tolist()
    return {"after": summary["after"], "steps": steps, "seconds_per_iteration": seconds}


def paired_ci(mine: list[list[float]], baseline: list[list[float]]) -> tuple[float, float, float]:
    """Mean and 95% CI of `mine - baseline` (seeds x prompts, paired by seed and prompt)."""
    return paired_bootstrap(np.asarray(mine) - np.asarray(baseline))


def table(results: dict[str, list[dict]]) -> list[str]:
    """Markdown rows: per method the mean over seeds, and each method's paired Δ vs REBEL."""
    lines = ["| method | success rate | turns | KL | Δ success vs REBEL (95% CI) | env steps |",
             "|---|---|---|---|---|---|"]
    base = [r["after"]["per_prompt_reward"] for r in results["rebel"]]
    for method, runs in results.items():
        mean = lambda key: float(np.mean([r["after"][key] for r in runs]))  # noqa: E731
        delta = "—" if method == "rebel" else "{:+.3f} [{:+.3f}, {:+.3f}]".format(*paired_ci(
            [r["after"]["per_prompt_reward"] for r in runs], base))
        steps = np.mean([r["steps"][-1] if r["steps"] else 0 for r in runs])
        lines.append(f"| {method} | {mean('success_rate'):.3f} | {mean('mean_turns'):.2f} | "
                     f"{mean('kl'):.3f} | {delta} | {steps:.0f} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40)
    parser.add_argument("--model", default="builtin:smollm2-135m-instruct")
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 iteration, 2x2 episodes")
    parser.add_argument("--out", default="runs/multiturn_study")
    args = parser.parse_args()
    args.prompts, args.generations, args.eval_prompts = (2, 2, 2) if args.quick else (8, 4, 64)
    if args.quick:
        args.seeds, args.iterations = 1, 1
    results = {m: [run_one(m, s, args, Path(args.out)) for s in range(args.seeds)]
               for m in METHODS}
    for method, runs in results.items():
        print(method, "s/iteration:", [round(r["seconds_per_iteration"], 1) for r in runs])
    lines = table(results)
    print("\n".join(lines))
    if not args.quick:  # a smoke run does not overwrite the page
        write_section(DOC, "multiturn-study", lines)
        plot(results)


def plot(results: dict[str, list[dict]]) -> None:
    """Held-out success rate after training against environment steps used, one point a seed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for method, runs in results.items():
        ax.scatter([r["steps"][-1] for r in runs], [r["after"]["success_rate"] for r in runs],
                   label=method)
    ax.set(xlabel="environment steps", ylabel="held-out success rate")
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT, dpi=120)


if __name__ == "__main__":
    main()
