"""How an online run trains and what it writes: the algorithm, iterations and optimiser
(`training`), held-out evaluation (`evaluation`) and the run folder with its trackers (`output`).
`OptimizerConfig` and `OutputConfigBase` are also the offline stages' (stage_configs.py)."""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass

from ..errors import ConfigError
from .algorithms import algorithm_spec
from .base import option
from .checks import check_at_least_one, check_choice, check_non_negative, check_positive

LR_SCHEDULERS = ["linear", "cosine", "constant"]
TRACKERS = ["tensorboard", "wandb", "trackio"]


@dataclass
class OptimizerConfig:
    """AdamW with a warmup-then-decay schedule (the online loop and every offline stage)."""

    learning_rate: float | None = option(5e-4, "AdamW peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.1, "fraction of optimiser steps with linear warmup")
    lr_scheduler: str = option("linear", "linear | cosine | constant (all after warmup)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    seed: int = option(0, "seed for prompt order, sampling and initialisation")

    def validate(self) -> None:
        check_positive(self, ["learning_rate"])
        check_non_negative(self, ["weight_decay", "max_grad_norm"])
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)


@dataclass
class TrainingConfig(OptimizerConfig):
    """The algorithm, the iterations and how each batch is reused, and the optimiser."""

    algorithm: str = option("rebel", "the loss: one of the registered algorithms ({algorithms})")
    num_iterations: int = option(12, "sample-score-update iterations")
    num_epochs: int = option(1, "passes over each sampled batch")
    minibatch_prompts: int | None = option(
        None,
        "prompts (each with its n completions) per optimiser micro-batch; default: all "
        "prompts_per_iteration (one update forward, which also gives log pi_t)",
    )
    gradient_accumulation_steps: int = option(1, "minibatches per optimiser step")
    max_tokens_per_microbatch: int = option(
        0,
        "real tokens per forward+backward, same gradient (0 = off)",
    )
    release_freed_memory: bool = option(
        False,
        "CPU on Linux: tensors of 1 MiB or more get their own memory map, given back when "
        "freed (peak RSS 3.5x lower at 1,024 tokens, slower: docs/long_completions.md)",
    )
    async_rollouts: int = option(
        0,
        "1 = draw batch t+1 from the weights before update t (one iteration stale; overlapped "
        "with update t under vllm_server; docs/scaling.md); 0 = off",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["num_iterations", "num_epochs", "gradient_accumulation_steps"]
                           + ([] if self.minibatch_prompts is None else ["minibatch_prompts"]))
        check_non_negative(self, ["max_tokens_per_microbatch"])
        super().validate()
        algorithm_spec(self.algorithm)


@dataclass
class EvalConfig:
    """Held-out evaluation before, during and after training."""

    eval_prompts: int = option(64, "held-out prompts scored before and after training (0 = skip)")
    eval_temperature: float | None = option(
        None,
        "scores at this temperature (default `temperature`); KL always at `temperature`",
    )
    eval_rewards: list[str] = option(
        help="extra rewards computed only at evaluation (judges)",
        factory=list,
    )
    eval_every: int = option(
        0,
        "iterations between held-out evaluations logged as eval/* (0 = before and after only)",
    )
    eval_batch_size: int = option(64, "sequences per held-out sampling batch")
    eval_generations: int | None = option(
        3,
        "samples per held-out prompt (None: num_generations); 64 x 3 gives the demo's paired "
        "gain a standard error of about 0.04",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["eval_batch_size"])
        check_non_negative(self, ["eval_prompts", "eval_every"])
        if self.eval_temperature is not None:
            check_positive(self, ["eval_temperature"])
        if self.eval_generations is not None:
            check_at_least_one(self, ["eval_generations"])


@dataclass
class OutputConfigBase:
    """Where a run is written (every command that trains)."""

    output_dir: str | None = option(None, "default: runs/rebel-YYYYmmdd-HHMMSS")
    overwrite: bool = option(False, "allow replacing a run already in output_dir")
    progress: bool = option(True, "show the progress bar and the final tables")

    def validate(self, prefix: str = "rebel") -> None:
        if self.output_dir is None:  # a fresh, timestamped folder
            self.output_dir = time.strftime(f"runs/{prefix}-%Y%m%d-%H%M%S")


@dataclass
class OutputConfig(OutputConfigBase):
    """The online run's folder: checkpoints, logs, progress."""

    save_every: int = option(
        10,
        "iterations between resumable checkpoints (0 = only the final one)",
    )
    log_completions: int = option(2, "sample completions written per iteration")
    tensorboard: bool = option(
        True,
        "write TensorBoard event files (false drops tensorboard from report_to)",
    )
    report_to: list[str] = option(
        help="trackers getting the metrics, config and sample tables: tensorboard, wandb, trackio "
        "(pip install 'rebel-rl[wandb]' / '[trackio]')",
        factory=lambda: ["tensorboard"],
    )
    tracker_project: str = option("rebel-rl", "wandb/trackio project")
    run_name: str | None = option(
        None,
        "wandb/trackio run name; default: the output_dir folder name",
    )
    push_to_hub: bool = option(
        False,
        "upload final/ (adapter or merged model), tokenizer and a model card at the end (or later: "
        "rebel push RUN_DIR)",
    )
    hub_model_id: str | None = option(
        None,
        "the Hub repository to push to, e.g. your-name/your-model",
    )
    hub_private: bool = option(False, "create the Hub repository as private")

    def validate(self, prefix: str = "rebel") -> None:
        check_non_negative(self, ["save_every", "log_completions"])
        for name in self.report_to:
            check_choice("report_to", name, TRACKERS)
            if name != "tensorboard" and importlib.util.find_spec(name) is None:
                raise ConfigError(f"report_to {name} needs the {name} package: pip install "
                                  f"'rebel-rl[{name}]'")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub needs hub_model_id (e.g. --hub_model_id "
                              "your-name/your-model)")
        super().validate(prefix)

    def trackers(self) -> list[str]:
        """The trackers that receive metrics (`tensorboard: false` drops TensorBoard)."""
        return [name for name in self.report_to if name != "tensorboard" or self.tensorboard]
