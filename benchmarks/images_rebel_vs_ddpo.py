"""REBEL vs DDPO on the embedded image task (the `rebel train-images` demo), per reward query, 3 seeds.

Both methods run the same loop, sampler, reward and budget: the demo's config (digits denoiser, no
guidance, 10 DDIM steps, 2 images per prompt, 16 prompts per iteration, 2 minibatches per iteration),
so every iteration costs 32 reward queries (each image is scored once) for either method. They differ
only in the objective: REBEL's pairwise regression, or DDPO's clipped per-step ratios with per-prompt
normalised rewards (prompts = what the model conditions on: the digit).

1. Learning-rate sweep: each method at three learning rates, seed 0, `--sweep_iterations` (a shorter
   budget); the learning rate with the highest held-out reward at the end (mean of the last two
   evaluations: before and after when there is no periodic one) is kept.
2. Three fresh seeds (1, 2, 3; not the sweep's) per method at its learning rate, the full budget.

Held-out reward (on the 20 test prompts x 4 images, fixed noise) is logged every `--eval_every`
iterations; the plot shows the mean over seeds with a 95% confidence band
(t distribution: 2 degrees of freedom for 3 seeds). Diversity after training: the root-mean-square pixel distance
between images of the same prompt (10 prompts, one per digit, 8 images each, fixed noise), averaged
over pairs and prompts; the reference model's value is given for scale.

    .venv/bin/python benchmarks/images_rebel_vs_ddpo.py [--iterations 80] [--workers 2]

Writes docs/images_rebel_vs_ddpo.png and the table between the markers in docs/images.md.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "images.md"
PLOT = ROOT / "docs" / "images_rebel_vs_ddpo.png"
START, END = "<!-- rebel-vs-ddpo:start -->", "<!-- rebel-vs-ddpo:end -->"
METHODS = {"rebel": {"algorithm": "rebel"}, "ddpo": {"algorithm": "ddpo"}}
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571}  # two-sided 95% t quantiles by degrees of freedom


def run_child(spec: dict) -> dict:
    """In this process: train one (method, lr, seed) run; return its eval curve, diversity and time."""
    import torch

    torch.set_num_threads(1)
    from rebel_rl.cli import image_demo_config
    from rebel_rl.training.online.loop import RebelTrainer
    from rebel_rl.training.run.outputs import read_metrics

    config = image_demo_config().with_overrides({
        # A constant rate for both methods, as in the measured results of docs/images.md (the demo decays it).
        **METHODS[spec["method"]], "learning_rate": spec["lr"], "lr_scheduler": "constant", "seed": spec["seed"],
        "num_iterations": spec["iterations"], "eval_every": spec["eval_every"], "save_every": 0,
        "eval_generations": spec["eval_generations"],
        "progress": False, "tensorboard": False, "output_dir": spec["run_dir"], "overwrite": True,
    }).validate()
    start = time.perf_counter()
    trainer = RebelTrainer(config)
    summary = trainer.train()
    seconds = time.perf_counter() - start
    names = list(summary["before"]["rewards"])
    point = lambda queries, result: {"queries": queries, "reward": result["reward"],  # noqa: E731
                                     **{n: result["rewards"][n] for n in names}, "kl": result["kl"]}
    curve = [point(0, summary["before"])]
    curve += [{"queries": m["reward_queries"], "reward": m["eval/reward"], **{n: m[f"eval/{n}"] for n in names},
               "kl": m["eval/kl"]}
              for m in read_metrics(Path(spec["run_dir"]))
              if "eval/reward" in m and m["iteration"] < spec["iterations"]]  # the last one is "after"
    curve.append(point(summary["reward_queries"], summary["after"]))
    return {**spec, "curve": curve, "seconds": seconds, "diversity": diversity(trainer.policy, False),
            "reference_diversity": diversity(trainer.policy, True)}


def diversity(policy, reference: bool, per_prompt: int = 8, seed: int = 1234) -> float:
    """Mean RMS pixel distance between two images of the same prompt (10 prompts, one per digit)."""
    import torch

    prompts = [f"a hand-drawn {d}" for d in range(10)]
    generator = torch.Generator(policy.device).manual_seed(seed)
    rollout = policy.sample(prompts, per_prompt, reference=reference, generator=generator)
    images = torch.stack(rollout.completions).flatten(1).view(10, per_prompt, -1)
    i, j = torch.triu_indices(per_prompt, per_prompt, offset=1)
    return float(((images[:, i] - images[:, j]) ** 2).mean(-1).sqrt().mean())


def launch(spec: dict, workdir: Path, reuse: bool = False) -> dict:
    """Run one spec in a fresh process (one thread), so runs do not share state; with `reuse`, a run whose
    result file is already in `workdir` is read instead of run again."""
    out = workdir / f"{spec['name']}.json"
    if reuse and out.is_file():
        return json.loads(out.read_text())
    subprocess.run([sys.executable, __file__, "--child", json.dumps(spec), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def final_score(result: dict, reward: str) -> float:
    """Mean held-out reward over the last two evaluations (less noisy than the last one alone)."""
    return statistics.fmean(point[reward] for point in result["curve"][-2:])


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of the 95% t interval over seeds."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, float("nan")
    return mean, T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def plot(results: dict[str, list[dict]], names: list[str], path: Path) -> None:
    """One panel per named reward: held-out mean over seeds against reward queries, 95% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        for (label, runs), color in zip(results.items(), ["tab:blue", "tab:orange", "tab:green"]):
            queries = [p["queries"] for p in runs[0]["curve"]]
            stats = [mean_ci([run["curve"][k][name] for run in runs]) for k in range(len(queries))]
            ax.plot(queries, [m for m, _ in stats], "o-", color=color, label=f"{label} ({len(runs)} seeds)")
            ax.fill_between(queries, [m - h for m, h in stats], [m + h for m, h in stats], color=color, alpha=0.2)
        ax.set(xlabel="reward queries (images scored)", ylabel=f"held-out {name}", title=name)
        ax.legend(fontsize=8)
    fig.suptitle("REBEL vs DDPO on the digits task: mean and 95% confidence band over seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(results: dict[str, list[dict]], sweep: dict[str, dict[float, float]], names: list[str]) -> str:
    first = next(iter(results.values()))
    before = {n: statistics.fmean(run["curve"][0][n] for runs in results.values() for run in runs)
              for n in ["reward", *names]}
    header = ["method", "learning rate (sweep: final reward)", "reward after (95% CI)",
              *[f"{n} after (95% CI)" for n in names], "KL to pi_ref", "diversity (pi_ref)", "minutes per run"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, runs in results.items():
        chosen = sweep[runs[0]["method"]]
        swept = ", ".join(f"{lr:g}: {score:+.3f}" for lr, score in chosen.items())
        lr_cell = f"**{runs[0]['lr']:g}** ({swept})" if runs[0]["lr"] == max(chosen, key=chosen.get) else \
            f"{runs[0]['lr']:g} (fixed, not the sweep's pick)"
        after = [mean_ci([final_score(r, n) for r in runs]) for n in ["reward", *names]]
        cells = [label, lr_cell, *[f"{m:+.4f} ± {h:.4f}" for m, h in after],
                 f"{statistics.fmean(r['curve'][-1]['kl'] for r in runs):.1f}",
                 f"{statistics.fmean(r['diversity'] for r in runs):.3f} "
                 f"({statistics.fmean(r['reference_diversity'] for r in runs):.3f})",
                 f"{statistics.fmean(r['seconds'] for r in runs) / 60:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("Before training: " + ", ".join(f"{n} {v:+.4f}" for n, v in before.items()) + ". \"After\" = mean of "
                 f"the last two held-out evaluations of each seed; {len(first)} seeds per method; equal budgets of "
                 f"{first[0]['curve'][-1]['queries']} reward queries.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=80)
    parser.add_argument("--sweep_iterations", type=int, default=30)
    parser.add_argument("--eval_every", type=int, default=20)
    parser.add_argument("--eval_generations", type=int, default=4)
    parser.add_argument("--rebel_lrs", type=float, nargs="+", default=[5e-4, 1e-3, 2e-3])
    parser.add_argument("--ddpo_lrs", type=float, nargs="+", default=[5e-4, 1e-3, 2e-3])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--workdir", default="runs/images_rebel_vs_ddpo")
    parser.add_argument("--also", nargs="*", default=[], metavar="METHOD:LR",
                        help="also run the seeds of METHOD at LR (an extra row, outside the sweep's choice)")
    parser.add_argument("--reuse", action="store_true", help="read runs whose results are already in --workdir")
    parser.add_argument("--child")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        Path(args.out).write_text(json.dumps(run_child(json.loads(args.child))))
        return
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    def spec(method: str, lr: float, seed: int, iterations: int) -> dict:
        name = f"{method}-lr{lr:g}-seed{seed}-it{iterations}"
        return {"name": name, "method": method, "lr": lr, "seed": seed, "run_dir": str(workdir / name),
                "iterations": iterations, "eval_every": args.eval_every, "eval_generations": args.eval_generations}

    lrs = {"rebel": args.rebel_lrs, "ddpo": args.ddpo_lrs}
    with ThreadPoolExecutor(args.workers) as pool:
        sweep_runs = list(pool.map(lambda s: launch(s, workdir, args.reuse),
                                   [spec(m, lr, 0, args.sweep_iterations) for m in METHODS for lr in lrs[m]]))
        names = list(sweep_runs[0]["curve"][0])[2:-1]  # the named rewards (the curve has queries, reward, ..., kl)
        sweep = {m: {r["lr"]: final_score(r, "reward") for r in sweep_runs if r["method"] == m} for m in METHODS}
        best = {m: max(scores, key=scores.get) for m, scores in sweep.items()}
        print("sweep:", json.dumps(sweep), "chosen:", best, flush=True)
        extra = [(m, float(lr)) for m, lr in (item.split(":") for item in args.also)]
        groups = {**{f"{m.upper()} (lr {best[m]:g})": (m, best[m]) for m in METHODS},
                  **{f"{m.upper()} (lr {lr:g}, not swept)": (m, lr) for m, lr in extra}}
        specs = [spec(m, lr, seed, args.iterations) for m, lr in groups.values() for seed in args.seeds]
        runs = list(pool.map(lambda s: launch(s, workdir, args.reuse), specs))
    results = {label: [r for r in runs if (r["method"], r["lr"]) == key] for label, key in groups.items()}
    plot(results, names, PLOT)
    minutes = (time.perf_counter() - started) / 60
    run_minutes = sum(r["seconds"] for r in [*sweep_runs, *runs]) / 60
    block = (f"{table(results, sweep, names)} Run times add up to {run_minutes:.0f} min ({args.workers} runs in "
             f"parallel, one thread each); this invocation took {minutes:.1f} min"
             + (" (reusing finished runs)." if args.reuse else "."))
    text = DOC.read_text()
    pattern = re.escape(START) + ".*?" + re.escape(END)
    DOC.write_text(re.sub(pattern, lambda _: f"{START}\n{block}\n{END}", text, flags=re.S))
    (workdir / "results.json").write_text(json.dumps({"sweep": sweep, "runs": runs}, indent=1))
    print(block)


if __name__ == "__main__":
    main()
