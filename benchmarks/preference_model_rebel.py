"""REBEL on a learned pairwise preference model, on the built-in TL;DR-like task, at the comparison's budget.

Trains `rebel preference-model` on builtin:tldr_preferences from the comparison's SFT model (or reuses it),
then runs REBEL with `--preference model:...` (no reward model in training) for 3 seeds as a `rebel compare`
job (same budget, evaluation and reuse of finished jobs), and prints the test results as a markdown table.
Needs the comparison's SFT and reward models: run `rebel compare` first (default output dir).

    .venv/bin/python benchmarks/preference_model_rebel.py     # about 6 min for the model, 2-3 min per seed
"""
from __future__ import annotations

import statistics
from pathlib import Path

from rebel_rl.compare import CompareConfig
from rebel_rl.compare.grid import run_jobs
from rebel_rl.compare.jobs import JUDGE, method_job, stage_paths
from rebel_rl.compare.tuned import TUNED

SEEDS = [0, 1, 2]


def main() -> None:
    config = CompareConfig(workers=2).validate()
    sft, reward_model = stage_paths(config)
    folder = Path(config.output_dir) / "preference_model"
    if not (folder / "final" / "config.json").is_file():
        from rebel_rl import PreferenceModelConfig, train_preference_model

        settings = {k: v for k, v in TUNED["reward_model_stage"].items()}
        train_preference_model(PreferenceModelConfig(model_name_or_path=sft, dataset="builtin:tldr_preferences",
                                                     output_dir=str(folder), overwrite=True, progress=False, **settings))
    overrides = {"preference": f"model:{folder / 'final'}", "rewards": [], "eval_rewards": [*JUDGE, f"model:{reward_model}"]}
    jobs = [method_job(config, "rebel", seed, overrides=overrides, name=f"rebel_model_preference-seed{seed}")
            for seed in SEEDS]
    results = run_jobs(jobs, config)
    read = {"Win rate (%)": lambda r: 100 * r["evaluation"]["rewards"]["tldr_win_rate"],
            "RM score": lambda r: r["evaluation"]["rewards"]["reward_model"],
            "KL(π‖π_sft)": lambda r: r["evaluation"]["kl"],
            "Win rate (%) at T=0.01": lambda r: 100 * r["extra_evaluations"][0]["rewards"]["tldr_win_rate"]}
    cells = []
    for name, get in read.items():
        values = [get(r) for r in results]
        cells.append(f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}")
    print("| Method | " + " | ".join(read) + " | Reward queries |")
    print("|---|" + "---|" * (len(read) + 1))
    print(f"| REBEL, preference model | {' | '.join(cells)} | {results[0]['reward_queries']:,} |")


if __name__ == "__main__":
    main()
