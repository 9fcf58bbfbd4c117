"""Issue 21 item 6: REBEL vs GRPO vs RLOO vs A*-PO on builtin:reasoning_arithmetic, one command.

Each (method, seed) is one `rebel train --config builtin:reasoning_arithmetic` in its own process,
one at a time (wall seconds and peak RSS are that run's own), into RUNS/METHOD-sSEED. A run whose
eval.json exists is kept, so an interrupted study continues where it stopped. Every method gets 32
reward queries per iteration (docs/reasoning.md: A*-PO's 4 prompts x (1 + 7 V* samples)). The page
has held-out accuracy (math_answer mean@2) mean +- SE over seeds, pass@2, the format rate, KL,
time and RSS, the reward queries, and each method's paired difference in accuracy against REBEL
with a bootstrap 95% CI over prompts and seeds (compare/stats.py); the curves figure sits next to
it.

    .venv/bin/python benchmarks/reasoning_study.py                  # 4 methods x 5 seeds
    .venv/bin/python benchmarks/reasoning_study.py --seeds 0 1 2    # the reduced study
    ... --methods rebel apo --seeds 0 --extra="--model_name_or_path PATH --num_iterations 1"
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rebel_rl.compare.stats import paired_bootstrap, verdict

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "builtin:reasoning_arithmetic"
# each method's overrides of the recipe: A*-PO samples one completion per prompt, spends the rest
# of the 32 reward queries per iteration on V* samples from pi_ref, and has no KL term in its loss
METHODS = {
    "rebel": [], "grpo": [], "rloo": [],
    "apo": ["--num_generations", "1", "--kl_coef", "0", "--prompts_per_iteration", "4",
            "--vstar_samples", "7"],
}
LABELS = {"rebel": "REBEL", "grpo": "GRPO", "rloo": "RLOO", "apo": "A*-PO"}
BASELINE = "rebel"
WORDS = {"higher": "loses", "lower": "wins", "tie": "ties"}  # REBEL ... against M (M is higher)


def run_name(method: str, seed: int) -> str:
    return f"{method}-s{seed}"


def train_command(method: str, seed: int, runs: Path, extra: list[str]) -> list[str]:
    """The run's command line; `extra` comes last so that a smoke's sizes override the method's."""
    rebel = str(Path(sys.executable).parent / "rebel")
    return [rebel, "train", "--config", RECIPE, "--algorithm", method, "--seed", str(seed),
            "--output_dir", str(runs / run_name(method, seed)), *METHODS[method],
            "--progress", "false", "--overwrite", *extra]


def run_measured(command: list[str], log: Path) -> dict:
    """Run `command` to its end with its output in `log`; its exit code, wall seconds and peak RSS.

    os.wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum over every
    child so far, so the second run could not show less than the first)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    return {"returncode": proc.returncode, "seconds": time.perf_counter() - start,
            "peak_rss_mb": usage.ru_maxrss / 1024, "command": shlex.join(command)}  # KiB on Linux


def run_study(methods: list[str], seeds: list[int], runs: Path, extra: list[str]) -> list[str]:
    """Train every missing (method, seed), one at a time; the names of the runs that failed."""
    failed = []
    for method in methods:
        for seed in seeds:
            name = run_name(method, seed)
            if (runs / name / "eval.json").is_file():
                print(f"{name}: done before, kept", flush=True)
                continue
            print(f"{name}: training", flush=True)
            result = run_measured(train_command(method, seed, runs, extra),
                                  runs / "logs" / f"{name}.log")
            (runs / "timings").mkdir(parents=True, exist_ok=True)
            (runs / "timings" / f"{name}.json").write_text(json.dumps(result, indent=2))
            print(f"{name}: exit {result['returncode']}, {result['seconds']:.0f} s, "
                  f"{result['peak_rss_mb']:.0f} MB", flush=True)
            if result["returncode"] != 0:
                failed.append(name)
    return failed


def load_runs(methods: list[str], seeds: list[int], runs: Path) -> dict[str, list[dict]]:
    """Per method, each finished seed's eval.json, training metrics and timing (None if absent)."""
    loaded: dict[str, list[dict]] = {}
    for method in methods:
        for seed in seeds:
            folder = runs / run_name(method, seed)
            if not (folder / "eval.json").is_file():
                continue
            timing = runs / "timings" / f"{run_name(method, seed)}.json"
            lines = (folder / "metrics.jsonl").read_text().splitlines()
            loaded.setdefault(method, []).append({
                "seed": seed, "eval": json.loads((folder / "eval.json").read_text()),
                "metrics": [json.loads(line) for line in lines if line.strip()],
                "timing": json.loads(timing.read_text()) if timing.is_file() else None})
    return loaded


def per_prompt(evaluation: dict) -> np.ndarray:
    """Held-out accuracy per problem (the mean over its samples); NaN where it was not scored."""
    values = evaluation["per_prompt_rewards"]["math_answer"]
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def paired_accuracy(runs: list[dict], baseline: list[dict]) -> tuple[int, float, float, float]:
    """Seeds paired, and the mean accuracy difference (points, runs minus baseline) with its 95% CI
    over prompts and seeds; prompts unscored in any run are left out."""
    theirs = {r["seed"]: per_prompt(r["eval"]["after"]) for r in baseline}
    seeds = [r for r in runs if r["seed"] in theirs]
    diffs = 100 * np.stack([per_prompt(r["eval"]["after"]) - theirs[r["seed"]] for r in seeds])
    diffs = diffs[:, np.isfinite(diffs).all(axis=0)]
    return (len(seeds), *paired_bootstrap(diffs))


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error over seeds (0 with one seed)."""
    arr = np.asarray(values, dtype=float)
    se = float(arr.std(ddof=1) / np.sqrt(arr.size)) if arr.size > 1 else 0.0
    return float(arr.mean()), se


def queries(run: dict) -> str:
    """Reward queries per iteration from the last training line (its counter is cumulative)."""
    last = [m for m in run["metrics"] if "reward_queries" in m and m.get("iteration")][-1]
    return f"{last['reward_queries'] / last['iteration']:g}"


def method_cells(name: str, side: str, runs: list[dict]) -> list[str]:
    """One row's cells before Δ from each run's `side` ('before' or 'after') of eval.json; pi_ref
    ('before') has no time, RSS or queries of its own."""
    verified = [r["eval"][side]["verified"] for r in runs]
    acc, se = mean_se([100 * v["math_answer"]["mean@2"] for v in verified])
    pass2 = np.mean([100 * v["math_answer"]["pass@2"] for v in verified])
    fmt = np.mean([100 * v["answer_tag_format"]["mean@2"] for v in verified])
    kl = np.mean([r["eval"][side]["kl"] for r in runs])
    cells = [name, str(len(runs)), f"{acc:.1f} ± {se:.1f}", f"{pass2:.1f}", f"{fmt:.1f}",
             f"{kl:.3f}"]
    if side == "before":
        return cells + ["—", "—", "—"]
    timed = [r["timing"] for r in runs if r["timing"]]  # a run trained by hand has no timing
    wall = f"{np.median([t['seconds'] for t in timed]):.0f}" if timed else "—"
    rss = f"{max(t['peak_rss_mb'] for t in timed) / 1024:.2f}" if timed else "—"
    return cells + [wall, rss, ", ".join(sorted({queries(r) for r in runs}))]


def report(loaded: dict[str, list[dict]], meta: dict) -> str:
    """The study's page (markdown) from the loaded runs and `meta` (date, loads, seeds, command,
    missing and failed runs, figure name); a pure function of its inputs."""
    rows = [["Method", "seeds", "accuracy % (mean ± SE)", "pass@2 %", "format %", "KL",
             "wall s/run (median)", "peak RSS GB (max)", "reward queries/iteration",
             "Δ accuracy vs REBEL, points [95% CI]"]]
    rows.append(["---"] * len(rows[0]))
    if loaded:  # pi_ref: the evaluation before training, one per seed (the same for every method)
        before = {r["seed"]: r for runs in loaded.values() for r in runs}
        rows.append(method_cells("pi_ref (before)", "before", list(before.values())) + ["—"])
    verdicts = []
    for method, runs in loaded.items():
        delta = "—"
        paired = {r["seed"] for r in runs} & {r["seed"] for r in loaded.get(BASELINE, [])}
        if method != BASELINE and paired:  # only seeds that both finished are compared
            seeds, mean, low, high = paired_accuracy(runs, loaded[BASELINE])
            delta = f"{mean:+.1f} [{low:+.1f}, {high:+.1f}] ({seeds} seed{'s' * (seeds != 1)})"
            verdicts.append(f"- REBEL {WORDS[verdict(low, high)]} against {LABELS[method]}: "
                            f"{delta}.")
        rows.append(method_cells(LABELS[method], "after", runs) + [delta])
    table = [f"| {' | '.join(row)} |" for row in rows]
    return "\n".join(_preamble(meta) + table + [""] + (verdicts or [
        "- No paired verdicts: REBEL or every other method is missing."]) + _footer(meta))


def _preamble(meta: dict) -> list[str]:
    """What the reader needs before the numbers: when, how loaded the machine was, the seeds."""
    load = lambda key: ", ".join(f"{x:.2f}" for x in meta[key])  # noqa: E731
    return [
        "# Reasoning study: REBEL vs GRPO vs RLOO vs A*-PO on arithmetic", "",
        f"Written by `benchmarks/reasoning_study.py` on {meta['date']}. Command: "
        f"`{meta['command']}`. Seeds: {', '.join(map(str, meta['seeds']))}. Machine load "
        f"(1, 5, 15 min) before: {load('load_before')}; after: {load('load_after')}.", "",
        "Equal reward queries: REBEL, GRPO and RLOO score 8 prompts x 4 samples per iteration; "
        "A*-PO 4 prompts x (1 sample + 7 V* samples from pi_ref). The column below is read from "
        "each run's metrics.jsonl (its last `reward_queries` over its iterations).", "",
        "Accuracy is `math_answer` mean@2 on the held-out problems after training; Δ is the "
        "method minus REBEL per problem and seed, with a two-way bootstrap 95% CI over problems "
        "and seeds; a CI that holds 0 is a tie.", ""]


def _footer(meta: dict) -> list[str]:
    """The figure, and what is missing or failed (a partial study says so)."""
    lines = ["", f"![training math_answer per iteration]({meta['figure']})", ""]
    if meta.get("missing"):
        lines.append(f"**Partial study.** Not finished: {', '.join(meta['missing'])}.")
    if meta.get("failed"):
        lines.append(f"Failed this time (see RUNS/logs/): {', '.join(meta['failed'])}.")
    return lines


def plot_curves(loaded: dict[str, list[dict]], path: Path) -> None:
    """Training rewards/math_answer per iteration, the mean over seeds, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for method, runs in loaded.items():
        points: dict[int, list[float]] = {}
        for run in runs:
            for m in run["metrics"]:
                if "rewards/math_answer" in m and "iteration" in m:
                    points.setdefault(m["iteration"], []).append(m["rewards/math_answer"])
        steps = sorted(points)
        ax.plot(steps, [np.mean(points[s]) for s in steps], marker=".",
                label=f"{LABELS[method]} ({len(runs)} seeds)")
    ax.set(xlabel="iteration", ylabel="training math_answer (mean over seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "runs" / "reasoning_study")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "reasoning_study.md")
    parser.add_argument("--extra", default="", help="arguments added to every `rebel train`, "
                        "as one quoted string (e.g. a tiny model and sizes for a smoke)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run what is missing, then write the page and the figure from every finished run."""
    args = parse_args(argv)
    load_before = os.getloadavg()
    failed = run_study(args.methods, args.seeds, args.runs_dir, shlex.split(args.extra))
    loaded = load_runs(args.methods, args.seeds, args.runs_dir)
    figure = args.output.with_name("reasoning_study.png")
    done = {run_name(m, r["seed"]) for m, runs in loaded.items() for r in runs}
    meta = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "load_before": load_before, "load_after": os.getloadavg(), "seeds": args.seeds,
            "command": shlex.join(["benchmarks/reasoning_study.py", *(argv or sys.argv[1:])]),
            "figure": figure.name, "failed": failed,
            "missing": [run_name(m, s) for m in args.methods for s in args.seeds
                        if run_name(m, s) not in done]}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report(loaded, meta) + "\n")
    if loaded:
        plot_curves(loaded, figure)
    print(f"wrote {args.output}" + (f" and {figure}" if loaded else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
