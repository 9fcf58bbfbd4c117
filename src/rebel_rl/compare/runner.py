"""Run comparison jobs, `workers` at a time, each in its own process (worker.py); a job whose result
exists for the same spec is skipped, so an interrupted comparison resumes where it stopped."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import RebelError
from .config import CompareConfig
from .jobs import check_job


def run_jobs(jobs: list[dict[str, Any]], config: CompareConfig) -> list[dict[str, Any]]:
    """Run `jobs` in `config.workers` parallel processes (skipping finished ones); return their
    results in job order. RebelError naming the failed jobs and their logs if any failed."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    for job in jobs:
        check_job(job)
    threads = max(1, (os.cpu_count() or 1) // config.workers)
    failures: list[str] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
    ) as bar:
        task = bar.add_task(f"{jobs[0]['name'] if len(jobs) == 1 else 'runs'}", total=len(jobs))

        def run(job: dict[str, Any]) -> dict[str, Any] | None:
            result = _finished(job) or _run_in_process(job, threads, failures)
            bar.advance(task)
            return result

        with ThreadPoolExecutor(max_workers=config.workers) as pool:
            results = list(pool.map(run, jobs))
    if failures:
        raise RebelError(f"{len(failures)} comparison job(s) failed: {'; '.join(failures)}")
    return results


def _finished(job: dict[str, Any]) -> dict[str, Any] | None:
    """The saved result of an identical job, if there is one."""
    path = Path(job["dir"]) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("job") == job else None


def _run_in_process(
    job: dict[str, Any], threads: int, failures: list[str]
) -> dict[str, Any] | None:
    folder = Path(job["dir"])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "result.json").unlink(missing_ok=True)
    spec = folder / "job.json"
    spec.write_text(json.dumps(job, indent=2))
    log = folder / "job.log"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as handle:
        code = subprocess.run(
            [sys.executable, "-m", "rebel_rl.compare.worker", str(spec), str(threads)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        ).returncode
    if code != 0:
        last = [line for line in log.read_text().splitlines() if line.strip()][-1:] or ["no output"]
        failures.append(f"{job['name']} (exit {code}: {last[0][:200]}; log {log})")
        return None
    return json.loads((folder / "result.json").read_text())
