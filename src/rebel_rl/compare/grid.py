"""Run the comparison: SFT, then the reward model, then (with --study or --sweep) the validation
sweep, then every (method, seed) job and the reward-vs-KL frontier's runs, `workers` at a time, each
in its own process; each stage writes its report when its jobs are done. Finished jobs are kept and
skipped on a re-run."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .config import CompareConfig, all_methods
from .frontier import frontier_jobs
from .jobs import method_job, reward_model_job, sft_job
from .runner import run_jobs
from .sweep import run_sweep


def compare(config: CompareConfig) -> dict[str, Any]:
    """Run what `config` describes (the table; the sweep alone with `sweep`; sweep, table and
    frontier with `study`) and write its reports; return the path of the last report and the number
    of results."""
    from .report import write_report
    from .sweep_report import write_sweep_report

    config = config.validate()
    start = time.perf_counter()
    out = Path(config.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    section = "" if config.report_section == "main" else f"-{config.report_section}"
    config.save_yaml(out / f"compare{section}.yaml")  # each report section keeps its own record
    stages = [[None] if config.sft_model else run_jobs([sft_job(config)], config),
              [None] if config.reward_model else run_jobs([reward_model_job(config)], config)]
    if config.sweep or config.study:
        record = run_sweep(config, run_jobs)
        report = write_sweep_report(config, record, time.perf_counter() - start)
        if not config.study:
            return {"report": str(report), "results": sum(len(c) for c in record["cells"].values())}
    order = all_methods()
    jobs = [method_job(config, m, s) for s in config.seeds
            for m in sorted(config.algorithms, key=order.index)]
    results = run_jobs(jobs, config)
    # the table, before the frontier
    report = write_report(config, results, stages, time.perf_counter() - start)
    extra = frontier_jobs(config) if config.report_section == "main" else []
    frontier = run_jobs(extra, config) if extra else []
    if frontier:
        report = write_report(config, results, stages, time.perf_counter() - start, frontier)
    return {"report": str(report), "results": len(results) + len(frontier)}
