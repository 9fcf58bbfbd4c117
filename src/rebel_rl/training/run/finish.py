"""What the main process writes when a run ends: the before/after evaluation (eval.json, eval.md,
the printed table), the reward/KL plot, image outputs for image policies, the final model (and a
merged one on request), and the Hub upload.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ...config.run import ModelConfig, OutputConfig
from ...evaluation.heldout import EvalResult
from ...evaluation.report import before_after_markdown, plot_reward_kl, print_before_after
from ...policies.base import Policy
from . import checkpoint as ckpt
from .outputs import read_metrics, write_json


def write_evaluation(run_dir: Path, before: EvalResult, after: EvalResult, label: str,
                     show: bool) -> None:
    """eval.json and eval.md of the held-out results before and after training; the table printed
    too when `show`."""
    write_json(run_dir / "eval.json", {"before": before.to_dict(), "after": after.to_dict()})
    (run_dir / "eval.md").write_text(before_after_markdown(before, after, label))
    if show:
        print_before_after(before, after, label)


def write_final_outputs(run_dir: Path, policy: Policy, model: ModelConfig, output: OutputConfig,
                        seed: int, prompts: list, model_state: dict | None) -> dict[str, Any]:
    """The plot, image outputs, final/ (and final/merged), the Hub upload; returns what the run's
    summary gains (`hub_url`). `model_state`: the weights gathered for the last checkpoint (None
    unless sharded), saved again as final/."""
    summary: dict[str, Any] = {}
    plot_reward_kl(read_metrics(run_dir), run_dir / "reward_kl.png")
    if policy.supports.images:  # before/after grid on the same noise, per-reward curves
        from .image_outputs import write_run_images

        write_run_images(policy, prompts, run_dir, read_metrics(run_dir), seed)
    ckpt.save_policy_atomic(policy, run_dir / "final", state_dict=model_state)
    if model.merge_adapter and model.use_lora:
        # Last step: merging folds the adapter into the base weights, so pi_ref is gone after it.
        merged = policy.merged_model()
        ckpt.save_policy_atomic(policy, run_dir / "final" / "merged", model=merged)
    if output.push_to_hub:
        from .hub import push_run

        summary["hub_url"] = push_run(run_dir, output.hub_model_id, private=output.hub_private)
    return summary
