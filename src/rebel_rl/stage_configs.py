"""Configs of the stages before and beside RL: `rebel sft`, `rebel reward-model`, `rebel preference-model`,
`rebel dpo`.

The TL;DR pipeline of the REBEL paper: supervised fine-tuning on reference completions, a Bradley-Terry
reward model initialised from the SFT model, then RL (`rebel train`) from the SFT model against that
reward model; offline DPO on the same preference data is the baseline that needs no reward model.
Each config is a flat dataclass like `RebelConfig`: field comments are the reference docs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, fields

from .config import ConfigBase, _check_choice
from .errors import ConfigError

SCRATCH_LEARNING_RATE = 3e-3
CHECKPOINT_LEARNING_RATE = 5e-5


@dataclass
class SFTConfig(ConfigBase):
    """Supervised fine-tuning on prompt-completion data (`rebel sft`)."""

    command = "sft"
    # --- model ---
    model_name_or_path: str = "scratch:small"  # checkpoint (path, hub id, builtin:NAME), scratch:small or scratch:medium
    vocab_size: int = 8000  # scratch: largest word-level vocabulary (the training text's most frequent words)
    dtype: str = "auto"  # weights: auto (fp32 on CPU, bf16 on GPUs that support it) | float32 | bfloat16 | float16
    mixed_precision: str = "no"  # autocast: no | bf16 | fp16 | auto (bf16 where native: slower for tiny models)
    # --- data ---
    dataset: str | None = None  # prompt-completion data: .jsonl/.json/.csv/.parquet, saved folder, hub id, builtin:NAME
    dataset_split: str = "train"  # split of `dataset` to train on
    eval_dataset: str | None = None  # held-out rows; default: `dataset` with split `eval_split`
    eval_split: str | None = "validation"  # split of the held-out rows; none = no evaluation
    eval_fraction: float = 0.1  # a single data file has no splits: this share of it is held out (0 = no evaluation)
    max_length: int = 512  # tokens of prompt + completion + EOS (longer is an error); scratch: the context window
    # --- optimisation ---
    num_epochs: int = 6  # passes over the training rows
    batch_size: int = 8  # examples per optimizer step
    learning_rate: float | None = None  # AdamW peak; default 3e-3 from scratch, 5e-5 from a checkpoint
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.05  # fraction of optimizer steps with linear warmup
    lr_scheduler: str = "cosine"  # linear | cosine | constant (all after warmup)
    max_grad_norm: float = 1.0  # gradient clipping norm
    seed: int = 0  # seed for initialisation, data order and the held-out split
    logging_steps: int = 10  # optimizer steps per metrics.jsonl line (their mean)
    # --- outputs ---
    output_dir: str | None = None  # default: runs/sft-YYYYmmdd-HHMMSS
    overwrite: bool = False  # allow replacing a run already in output_dir
    progress: bool = True  # show the progress bar

    def validate(self) -> "SFTConfig":
        """Check every value (one ConfigError line for the first problem); fill in the defaults that
        depend on other fields (output_dir, learning_rate)."""
        from .policies.scratch import is_scratch, scratch_size  # tokenizers and transformers: import when needed

        scratch = is_scratch(self.model_name_or_path)
        if scratch:
            scratch_size(self.model_name_or_path)
        if self.learning_rate is None:
            self.learning_rate = SCRATCH_LEARNING_RATE if scratch else CHECKPOINT_LEARNING_RATE
        _check_positive(self, ["vocab_size", "max_length"])
        return _validate_stage(self, "sft")


@dataclass
class RewardModelConfig(ConfigBase):
    """Bradley-Terry reward-model training on preference data (`rebel reward-model`)."""

    command = "reward-model"
    # --- model ---
    model_name_or_path: str | None = None  # causal-LM checkpoint to start from (the SFT output); the score head is new
    dtype: str = "auto"  # weights: auto (fp32 on CPU, bf16 on GPUs that support it) | float32 | bfloat16 | float16
    mixed_precision: str = "no"  # autocast: no | bf16 | fp16 | auto (bf16 where native: slower for tiny models)
    # --- data ---
    dataset: str | None = None  # preference data: prompt, chosen, rejected (optional bool judge_prefers_chosen)
    dataset_split: str = "train"  # split of `dataset` to train on
    eval_dataset: str | None = None  # held-out pairs; default: `dataset` with split `eval_split`
    eval_split: str | None = "validation"  # split of the held-out pairs; none = no evaluation
    eval_fraction: float = 0.1  # a single data file has no splits: this share of it is held out (0 = no evaluation)
    # --- optimisation ---
    num_epochs: int = 2  # passes over the training pairs
    batch_size: int = 16  # preference pairs per optimizer step
    learning_rate: float = 1e-3  # AdamW peak (suits the scratch models; ~1e-5 for pretrained ones)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.05  # fraction of optimizer steps with linear warmup
    lr_scheduler: str = "cosine"  # linear | cosine | constant (all after warmup)
    max_grad_norm: float = 1.0  # gradient clipping norm
    center_rewards_coefficient: float = 0.01  # loss += c * mean((r_chosen + r_rejected)^2): rewards centred on 0
    seed: int = 0  # seed for the score head, data order and the held-out split
    logging_steps: int = 10  # optimizer steps per metrics.jsonl line (their mean)
    # --- outputs ---
    output_dir: str | None = None  # default: runs/reward-model-YYYYmmdd-HHMMSS
    overwrite: bool = False  # allow replacing a run already in output_dir
    progress: bool = True  # show the progress bar

    def validate(self) -> "RewardModelConfig":
        """Check every value (one ConfigError line for the first problem); fill in output_dir."""
        _require(self, "model_name_or_path", "the checkpoint to start from, e.g. --model_name_or_path runs/sft/final")
        if self.center_rewards_coefficient < 0:
            raise ConfigError(f"center_rewards_coefficient must be >= 0, got {self.center_rewards_coefficient}")
        return _validate_stage(self, "reward-model")


@dataclass
class PreferenceModelConfig(RewardModelConfig):
    """A pairwise preference model P(a > b | x) on preference data in both orders (`rebel preference-model`);
    every other option is the reward model's."""

    command = "preference-model"
    center_rewards_coefficient: float = 0.01  # loss += c * mean((f(x,a,b) + f(x,b,a))^2): the two orders' logits sum to 0
    output_dir: str | None = None  # default: runs/preference-model-YYYYmmdd-HHMMSS

    def validate(self) -> "PreferenceModelConfig":
        if self.output_dir is None:
            self.output_dir = time.strftime("runs/preference-model-%Y%m%d-%H%M%S")
        return super().validate()


@dataclass
class DPOConfig(ConfigBase):
    """Offline DPO on preference data against a frozen reference (`rebel dpo`)."""

    command = "dpo"
    # --- model ---
    model_name_or_path: str | None = None  # checkpoint to start from and reference pi_ref (the SFT output)
    dtype: str = "auto"  # weights: auto (fp32 on CPU, bf16 on GPUs that support it) | float32 | bfloat16 | float16
    mixed_precision: str = "no"  # autocast: no | bf16 | fp16 | auto (bf16 where native: slower for tiny models)
    use_lora: bool = False  # LoRA (pi_ref = adapter off; merged into final/); else full model, pi_ref = frozen copy
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = lora_alpha / lora_r)
    lora_dropout: float = 0.0  # dropout inside LoRA layers
    lora_target_modules: str = "all-linear"  # peft target_modules: all-linear or comma-separated names
    # --- data ---
    dataset: str | None = None  # preference data: prompt, chosen, rejected (optional bool judge_prefers_chosen)
    dataset_split: str = "train"  # split of `dataset` to train on
    eval_dataset: str | None = None  # held-out pairs; default: `dataset` with split `eval_split`
    eval_split: str | None = "validation"  # split of the held-out pairs; none = no evaluation
    eval_fraction: float = 0.1  # a single data file has no splits: this share of it is held out (0 = no evaluation)
    max_length: int = 512  # tokens of prompt + completion + EOS (longer is an error)
    # --- algorithm and optimisation ---
    beta: float = 0.1  # DPO temperature: implicit reward = beta * (log pi - log pi_ref)
    temperature: float = 1.0  # log-probs of softmax(logits / temperature), as the RL loop computes them
    num_epochs: int = 1  # passes over the training pairs
    batch_size: int = 16  # preference pairs per optimizer step
    learning_rate: float = 1e-4  # AdamW peak (suits the scratch models; ~1e-6 for full pretrained ones)
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.1  # fraction of optimizer steps with linear warmup
    lr_scheduler: str = "linear"  # linear | cosine | constant (all after warmup)
    max_grad_norm: float = 1.0  # gradient clipping norm
    seed: int = 0  # seed for data order and the held-out split
    logging_steps: int = 10  # optimizer steps per metrics.jsonl line (their mean)
    # --- outputs ---
    output_dir: str | None = None  # default: runs/dpo-YYYYmmdd-HHMMSS
    overwrite: bool = False  # allow replacing a run already in output_dir
    progress: bool = True  # show the progress bar

    def validate(self) -> "DPOConfig":
        """Check every value (one ConfigError line for the first problem); fill in output_dir."""
        _require(self, "model_name_or_path", "the checkpoint to start from, e.g. --model_name_or_path runs/sft/final")
        _check_positive(self, ["lora_r", "max_length"])
        for name in ["beta", "temperature"]:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.lora_dropout < 0:
            raise ConfigError(f"lora_dropout must be >= 0, got {self.lora_dropout}")
        return _validate_stage(self, "dpo")


def _validate_stage(config, prefix: str):
    """Checks every stage shares: finite numbers, data, optimisation values, choices, output_dir."""
    for f in fields(config):  # YAML `.nan`/`.inf` and "nan" on the command line parse as floats
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name} must be a finite number, got {value}")
    _require(config, "dataset", f"a data file, folder, hub id or builtin:NAME, e.g. --dataset data.jsonl")
    _check_positive(config, ["num_epochs", "batch_size", "logging_steps"])
    if not config.learning_rate > 0:
        raise ConfigError(f"learning_rate must be > 0, got {config.learning_rate}")
    for name in ["weight_decay", "max_grad_norm"]:
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(config, name)}")
    if not 0 <= config.warmup_ratio < 1:
        raise ConfigError(f"warmup_ratio must be in [0, 1), got {config.warmup_ratio}")
    if not 0 <= config.eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {config.eval_fraction}")
    _check_choice("dtype", config.dtype, ["auto", "float32", "bfloat16", "float16"])
    _check_choice("mixed_precision", config.mixed_precision, ["auto", "no", "bf16", "fp16"])
    _check_choice("lr_scheduler", config.lr_scheduler, ["linear", "cosine", "constant"])
    if config.output_dir is None:
        config.output_dir = time.strftime(f"runs/{prefix}-%Y%m%d-%H%M%S")
    return config


def _check_positive(config, names: list[str]) -> None:
    for name in names:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")


def _require(config, name: str, hint: str) -> None:
    if not getattr(config, name):
        raise ConfigError(f"{name} is required: give {hint}")
