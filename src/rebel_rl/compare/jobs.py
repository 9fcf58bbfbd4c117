"""The jobs of a comparison, each run in its own process by `worker.py`: SFT, the reward model, and
one job per (method, seed) that trains (or not, for SFT) and then evaluates on the test split.

A job is a JSON-able dict; the worker records its wall time and peak memory beside the result, and
the grid skips a job whose result exists for the same spec (so an interrupted comparison resumes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import CompareConfig
from .extensions import EXTENSIONS, extension_settings
from .task import JUDGE, PREFERENCES, SFT_DATA, TASK
from .tuned import TUNED, tuned_settings


def check_job(job: dict[str, Any]) -> None:
    """Validate a job's configs in the parent, so a bad value is one error line before anything
    runs."""
    from ..config import RebelConfig
    from ..evaluation.model_eval import EvaluateConfig
    from ..stage_configs import DPOConfig, RewardModelConfig, SFTConfig

    kinds = {
        "online": RebelConfig,
        "dpo": DPOConfig,
        "sft_stage": SFTConfig,
        "reward_model": RewardModelConfig,
    }
    if "config" in job:
        kinds[job["kind"]].from_dict(job["config"], source=f"job {job['name']}").validate()
    for spec in job.get("evaluate", []):
        EvaluateConfig.from_dict(spec, source=f"job {job['name']}").validate()


def sft_job(config: CompareConfig) -> dict[str, Any]:
    """Supervised fine-tuning of a scratch model on the reference summaries (shared by every
    method)."""
    return {
        "kind": "sft_stage",
        "name": "sft-model",
        "dir": str(Path(config.output_dir) / "sft"),
        "config": {
            "model_name_or_path": f"scratch:{config.model_size}",
            "dataset": SFT_DATA,
            **TUNED["sft_stage"],
            "output_dir": str(Path(config.output_dir) / "sft"),
            "overwrite": True,
            "progress": False,
        },
    }


def stage_paths(config: CompareConfig) -> tuple[str, str]:
    """The SFT model and the reward model every method uses: given, or trained by the comparison."""
    out = Path(config.output_dir)
    return (config.sft_model or str(out / "sft" / "final"),
            config.reward_model or str(out / "reward_model" / "final"))


def reward_model_job(config: CompareConfig) -> dict[str, Any]:
    """The Bradley-Terry reward model, initialised from the SFT model as in the paper."""
    out = Path(config.output_dir)
    return {
        "kind": "reward_model",
        "name": "reward-model",
        "dir": str(out / "reward_model"),
        "config": {
            "model_name_or_path": stage_paths(config)[0],
            "dataset": PREFERENCES,
            **TUNED["reward_model_stage"],
            "output_dir": str(out / "reward_model"),
            "overwrite": True,
            "progress": False,
        },
    }


def method_job(config: CompareConfig, method: str, seed: int, *, split: str = "test",
               overrides: dict[str, Any] | None = None, name: str | None = None,
               paper_eval: bool = True) -> dict[str, Any]:
    """Train `method` from the SFT model with `seed` (nothing for sft), then evaluate on `split`
    (and, with `paper_eval`, again at the paper's temperature). Settings: the output folder's tuned
    ones (tuned.py)."""
    out = Path(config.output_dir)
    sft_final, reward_model = stage_paths(config)
    name = name or f"{method}-seed{seed}"
    run_dir = out / "runs" / name
    chosen = tuned_settings(out)
    tuned = (
        extension_settings(method, chosen, config, reward_model)
        if method in EXTENSIONS
        else chosen.get(method, {})
    )
    settings = {**tuned, **(overrides or {})}
    job: dict[str, Any] = {
        "kind": method if method in ("sft", "dpo") else "online",
        "name": name,
        "method": method,
        "seed": seed,
        "dir": str(run_dir),
    }
    if method == "dpo":
        job["config"] = {
            "model_name_or_path": sft_final,
            "dataset": PREFERENCES,
            "temperature": config.temperature,
            **settings,
            "seed": seed,
            "output_dir": str(run_dir),
            "overwrite": True,
            "progress": False,
        }
    elif method != "sft":
        job["config"] = online_config(
            config, method, seed, run_dir, sft_final, reward_model, settings
        )
    policy = sft_final if method == "sft" else str(run_dir / "final")
    evaluate = {
        "model_name_or_path": policy,
        "reference_model": sft_final,
        "dataset": TASK,
        "split": split,
        "num_prompts": config.test_prompts,
        "num_generations": config.eval_samples,
        "rewards": [f"model:{reward_model}"],
        "eval_rewards": JUDGE,
        "temperature": config.eval_temperature,
        "kl_temperature": config.temperature,
        "max_new_tokens": config.max_new_tokens,
        "seed": seed,
        "output": str(run_dir / f"eval_{split}.json"),
    }
    job["evaluate"] = [evaluate]
    if paper_eval:
        job["evaluate"].append(
            {
                **evaluate,
                "temperature": config.paper_temperature,
                "num_generations": 1,
                "output": str(run_dir / f"eval_{split}_t{config.paper_temperature:g}.json"),
            }
        )
    return job


def online_config(
    config: CompareConfig,
    method: str,
    seed: int,
    run_dir: Path,
    sft_final: str,
    reward_model: str,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """The `RebelConfig` of one online run: the same budget, reward, KL term and EOS penalty for
    every method."""
    settings = dict(settings)
    minibatches = settings.pop("minibatches", 1)
    # extensions may change it
    prompts = settings.get("prompts_per_iteration", config.prompts_per_iteration)
    minibatch_prompts = max(1, prompts // minibatches)
    while prompts % minibatch_prompts:
        minibatch_prompts -= 1
    return {
        "algorithm": method,
        "model_name_or_path": sft_final,
        "use_lora": False,
        "dtype": "float32",
        "mixed_precision": "no",
        "dataset": TASK,
        "dataset_split": "train",
        "eval_split": "validation",
        "rewards": [f"model:{reward_model}"],
        "eval_rewards": JUDGE,
        "kl_coef": config.kl_coef,
        "missing_eos_penalty": config.missing_eos_penalty,
        "num_generations": config.num_generations,
        "prompts_per_iteration": config.prompts_per_iteration,
        "max_new_tokens": config.max_new_tokens,
        "temperature": config.temperature,
        "num_iterations": config.num_iterations,
        "eval_every": config.eval_every,
        "minibatch_prompts": minibatch_prompts,
        "eval_prompts": config.eval_prompts,
        "eval_temperature": config.eval_temperature,
        "eval_batch_size": 64,
        "max_prompt_length": 512,
        "warmup_ratio": 0.0,
        "lr_scheduler": "constant",
        "save_every": 0,
        "log_completions": 2,
        "tensorboard": False,
        "progress": False,
        **settings,
        "seed": seed,
        "output_dir": str(run_dir),
        "overwrite": True,
    }
