"""Run one comparison job in this process: `python -m rebel_rl.compare.worker JOB.json THREADS`.

Writes `result.json` into the job's folder: the job spec, wall time, peak resident memory of this
process, reward queries, and the test evaluation. Separate processes keep each job's peak memory its
own.
"""
from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Train (per the job's kind) and evaluate; return the result record."""
    from ..evaluation.model_eval import EvaluateConfig, evaluate_model

    start = time.perf_counter()
    summary: dict[str, Any] = {}
    kind = job["kind"]
    if kind == "sft_stage":
        from ..stage_configs import SFTConfig
        from ..training.offline.sft import sft

        summary = sft(SFTConfig.from_dict(job["config"]).validate())
    elif kind == "reward_model":
        from ..stage_configs import RewardModelConfig
        from ..training.offline.reward_model import train_reward_model

        summary = train_reward_model(RewardModelConfig.from_dict(job["config"]).validate())
    elif kind == "dpo":
        from ..stage_configs import DPOConfig
        from ..training.offline.offline_dpo import dpo

        summary = dpo(DPOConfig.from_dict(job["config"]).validate())
    elif kind == "online":
        from ..config import RebelConfig
        from ..training.online.loop import RebelTrainer

        summary = RebelTrainer(RebelConfig.from_dict(job["config"]).validate()).train()
    train_seconds = time.perf_counter() - start
    evaluations = [
        evaluate_model(EvaluateConfig.from_dict(spec)) for spec in job.get("evaluate", [])
    ]
    return {
        "job": job,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - start,
        "peak_memory_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "reward_queries": summary.get("reward_queries", 0),
        "summary": _jsonable(summary),
        # at the comparison's evaluation temperature
        "evaluation": evaluations[0] if evaluations else None,
        "extra_evaluations": evaluations[1:],  # e.g. at the paper's temperature 0.01
    }


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def main() -> int:
    job = json.loads(Path(sys.argv[1]).read_text())
    import torch

    torch.set_num_threads(int(sys.argv[2]))
    from ..logs import quiet_libraries

    quiet_libraries()
    result = run_job(job)
    target = Path(job["dir"]) / "result.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
