"""Configs of the stages before and beside RL: `rebel sft`, `rebel reward-model`, `rebel
preference-model`, `rebel dpo`.

The TL;DR pipeline of the REBEL paper: supervised fine-tuning on reference completions, a
Bradley-Terry reward model initialised from the SFT model, then RL (`rebel train`) from the SFT
model against that reward model; offline DPO on the same preference data is the baseline that needs
no reward model. Each stage is a grouped config built from the shared groups (weights, LoRA, data,
optimisation, outputs) plus one small group of its own; `defaults` and `help` say where a stage
differs.
"""
from __future__ import annotations

from dataclasses import dataclass

from .config.base import (GroupedConfig, check_at_least_one, check_non_negative, check_positive,
                          option)
from .config.run import LoraConfig, OptimizerConfig, OutputConfigBase, WeightsConfig
from .errors import ConfigError

SCRATCH_LEARNING_RATE = 3e-3
CHECKPOINT_LEARNING_RATE = 5e-5
SCRATCH_PREFIX = "scratch:"  # scratch:small | scratch:medium (models/scratch.py builds them)
SCRATCH_SIZES = ["small", "medium"]


def is_scratch(name: str) -> bool:
    """Whether a model name asks for a new model trained from scratch."""
    return str(name).startswith(SCRATCH_PREFIX)


def scratch_size(name: str) -> str:
    """The size in `scratch:SIZE`; ConfigError for an unknown one."""
    size = name.removeprefix(SCRATCH_PREFIX)
    if size not in SCRATCH_SIZES:
        raise ConfigError(f"unknown scratch model size {size!r} in {name!r}: use "
                          + " or ".join(f"{SCRATCH_PREFIX}{s}" for s in SCRATCH_SIZES))
    return size


@dataclass
class StageDataConfig:
    """A stage's training rows and where its held-out rows come from."""

    dataset: str | None = option(
        None,
        "prompt-completion or preference data: .jsonl/.json/.csv/.parquet, saved folder, hub id, "
        "builtin:NAME",
    )
    dataset_split: str = option("train", "split of `dataset` to train on")
    eval_dataset: str | None = option(
        None,
        "held-out rows; default: `dataset` with split `eval_split`",
    )
    eval_split: str | None = option(
        "validation",
        "split of the held-out rows; none = no evaluation",
    )
    eval_fraction: float = option(
        0.1,
        "a single data file has no splits: this share of it is held out (0 = no evaluation)",
    )

    def validate(self) -> None:
        if not self.dataset:
            raise ConfigError(
                "dataset is required: give a data file, folder, hub id or builtin:NAME, "
                "e.g. --dataset data.jsonl"
            )
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction must be in [0, 1), got {self.eval_fraction}")


@dataclass
class StageOptimConfig(OptimizerConfig):
    """Epochs over a fixed dataset in batches, with AdamW and a schedule."""

    num_epochs: int = option(1, "passes over the training rows")
    batch_size: int = option(16, "examples per optimizer step")
    logging_steps: int = option(10, "optimizer steps per metrics.jsonl line (their mean)")

    def validate(self) -> None:
        super().validate()
        check_at_least_one(self, ["num_epochs", "batch_size", "logging_steps"])


@dataclass
class SFTOptions:
    """What only supervised fine-tuning reads."""

    vocab_size: int = option(
        8000,
        "scratch: largest word-level vocabulary (the training text's most frequent words)",
    )
    max_length: int = option(
        512,
        "tokens of prompt + completion + EOS (longer is an error); scratch: the context window",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["vocab_size", "max_length"])


@dataclass
class RewardModelOptions:
    """What only reward (and preference) model training reads."""

    center_rewards_coefficient: float = option(
        0.01,
        "loss += c * mean((r_chosen + r_rejected)^2): rewards centred on 0",
    )

    def validate(self) -> None:
        check_non_negative(self, ["center_rewards_coefficient"])


@dataclass
class DPOOptions:
    """What only offline DPO reads."""

    max_length: int = option(512, "tokens of prompt + completion + EOS (longer is an error)")
    beta: float = option(0.1, "DPO temperature: implicit reward = beta * (log pi - log pi_ref)")
    temperature: float = option(
        1.0,
        "log-probs of softmax(logits / temperature), as the RL loop computes them",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["max_length"])
        check_positive(self, ["beta", "temperature"])


# Where every stage differs from the shared groups' defaults and comments.
STAGE_DEFAULTS = {"mixed_precision": "no", "model_name_or_path": None}
STAGE_HELP = {
    "mixed_precision": "autocast: no | bf16 | fp16 | auto (bf16 where native: slower for tiny "
        "models)",
    "output_dir": "default: runs/COMMAND-YYYYmmdd-HHMMSS",
}
FROM_SFT = "the checkpoint to start from, e.g. --model_name_or_path runs/sft/final"


class StageConfig(GroupedConfig):
    """A stage: the shared groups plus its own; validation of every group, then the stage's own
    rules."""

    own_group: tuple[str, type] = ("", object)
    help: dict[str, str] = {}

    @classmethod
    def groups(cls) -> dict[str, type]:
        name, group = cls.own_group
        return {
            "model": WeightsConfig,
            "data": StageDataConfig,
            name: group,
            "optim": StageOptimConfig,
            "output": OutputConfigBase,
        }

    @classmethod
    def field_help(cls) -> dict[str, str]:
        comments = {**super().field_help(), **STAGE_HELP, **cls.help}
        comments["output_dir"] = comments["output_dir"].replace("COMMAND", cls.command)
        return comments

    def validate(self):
        """Check every value (one ConfigError line for the first problem); fill in output_dir."""
        if not self.model.model_name_or_path:
            raise ConfigError(f"model_name_or_path is required: give {FROM_SFT}")
        self.check_finite()
        for name, group in self._groups.items():
            group.validate(prefix=self.command) if name == "output" else group.validate()
        return self


class SFTConfig(StageConfig):
    """Supervised fine-tuning on prompt-completion data (`rebel sft`)."""

    command = "sft"
    own_group = ("sft", SFTOptions)
    defaults = {
        **STAGE_DEFAULTS,
        "model_name_or_path": "scratch:small",
        "learning_rate": None,
        "num_epochs": 6,
        "batch_size": 8,
        "warmup_ratio": 0.05,
        "lr_scheduler": "cosine",
    }
    help = {
        "model_name_or_path": "checkpoint (path, hub id, builtin:NAME), scratch:small or "
            "scratch:medium",
        "dataset": "prompt-completion data: .jsonl/.json/.csv/.parquet, saved folder, hub id, "
            "builtin:NAME",
        "learning_rate": "AdamW peak; default 3e-3 from scratch, 5e-5 from a checkpoint",
        "seed": "seed for initialisation, data order and the held-out split",
    }

    def validate(self) -> "SFTConfig":
        """Also fills in the learning rate, which depends on whether the model starts from
        scratch."""
        scratch = is_scratch(self.model.model_name_or_path)
        if scratch:
            scratch_size(self.model.model_name_or_path)
        optim = self.optim
        if optim.learning_rate is None:
            optim.learning_rate = SCRATCH_LEARNING_RATE if scratch else CHECKPOINT_LEARNING_RATE
        return super().validate()


class RewardModelConfig(StageConfig):
    """Bradley-Terry reward-model training on preference data (`rebel reward-model`)."""

    command = "reward-model"
    own_group = ("reward_model", RewardModelOptions)
    defaults = {**STAGE_DEFAULTS, "num_epochs": 2, "learning_rate": 1e-3, "warmup_ratio": 0.05,
                "lr_scheduler": "cosine"}
    help = {
        "model_name_or_path": "causal-LM checkpoint to start from (the SFT output); the score head "
            "is new",
        "dataset": "preference data: prompt, chosen, rejected (optional bool judge_prefers_chosen)",
        "learning_rate": "AdamW peak (suits the scratch models; ~1e-5 for pretrained ones)",
        "batch_size": "preference pairs per optimizer step",
        "num_epochs": "passes over the training pairs",
        "seed": "seed for the score head, data order and the held-out split",
    }


class PreferenceModelConfig(RewardModelConfig):
    """A pairwise preference model P(a > b | x) on preference data in both orders (`rebel
    preference-model`); every other option is the reward model's."""

    command = "preference-model"
    help = {**RewardModelConfig.help, "center_rewards_coefficient":
            "loss += c * mean((f(x,a,b) + f(x,b,a))^2): the two orders' logits sum to 0"}


class DPOConfig(StageConfig):
    """Offline DPO on preference data against a frozen reference (`rebel dpo`)."""

    command = "dpo"
    own_group = ("dpo", DPOOptions)
    defaults = {**STAGE_DEFAULTS, "use_lora": False, "learning_rate": 1e-4}
    help = {
        "model_name_or_path": "checkpoint to start from and reference pi_ref (the SFT output)",
        "dataset": "preference data: prompt, chosen, rejected (optional bool judge_prefers_chosen)",
        "use_lora": "LoRA (pi_ref = adapter off; merged into final/); else full model, pi_ref = "
            "frozen copy",
        "lora_dropout": "dropout inside LoRA layers",
        "learning_rate": "AdamW peak (suits the scratch models; ~1e-6 for full pretrained ones)",
        "batch_size": "preference pairs per optimizer step",
        "num_epochs": "passes over the training pairs",
        "seed": "seed for data order and the held-out split",
    }

    @classmethod
    def groups(cls) -> dict[str, type]:
        groups = super().groups()
        return {"model": groups.pop("model"), "lora": LoraConfig, **groups}
