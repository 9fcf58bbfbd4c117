"""What an online run's episodes are made of and scored by: the prompts and how each prompt's
completions are paired (`data`), what is maximised (`reward`), and the multi-turn environment, if
any (`environment`)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .base import option
from .checks import check_at_least_one, check_choice, check_non_negative

DEFAULT_DATASET = "builtin:positive_sentiment"


@dataclass
class DataConfig:
    """Prompts, and where each prompt's completions come from and how they are paired."""

    dataset: str = option(
        DEFAULT_DATASET,
        ".jsonl/.json/.csv/.parquet file, save_to_disk folder, hub id, builtin:NAME",
    )
    dataset_split: str = option("train", "split of `dataset` to train on")
    eval_dataset: str | None = option(
        None,
        "held-out prompts; default: `dataset` with split `eval_split`",
    )
    eval_split: str = option("test", "split of the held-out prompts")
    prompt_column: str = option("prompt", "column holding the prompts (text or chat messages)")
    max_prompt_length: int = option(
        256,
        "prompts longer than this (in tokens) are an error, not silently cut",
    )
    # --- pairs (REBEL's extensions, docs/extensions/) ---
    pair_source: str = option(
        "online",
        "rebel: online (n samples) | hybrid (n-k samples + k dataset completions) | offline (all n "
        "from the dataset)",
    )
    completion_columns: list[str] | None = option(
        None,
        "the k dataset columns of written completions; default: completion (hybrid), "
        "chosen,rejected (offline)",
    )
    pairing: str = option(
        "all",
        "rebel: all (every pair i < j of a prompt's n) | best_worst (highest- vs lowest-reward of "
        "n)",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["max_prompt_length"])
        check_choice("pair_source", self.pair_source, ["online", "hybrid", "offline"])
        check_choice("pairing", self.pairing, ["all", "best_worst"])
        if self.pair_source == "online" and self.completion_columns:
            raise ConfigError("completion_columns is read only with pair_source hybrid or offline")

    def written_columns(self) -> list[str]:
        """The dataset columns whose completions fill the last slots of each prompt's n (empty when
        online)."""
        if self.pair_source == "online":
            return []
        if self.completion_columns:
            return list(self.completion_columns)
        return ["completion"] if self.pair_source == "hybrid" else ["chosen", "rejected"]


@dataclass
class RewardConfig:
    """What is maximised: rewards (or a preference), the KL penalty and the missing-EOS penalty."""

    rewards: list[str] = option(
        help="builtin, module:fn, file.py:fn, model:PATH",
        factory=lambda: ["sentiment"],
    )
    reward_weights: list[float] | None = option(None, "one per reward; default 1.0 each")
    kl_coef: float = option(0.05, "reward = score - kl_coef * (log pi_t(y) - log pi_ref(y))")
    missing_eos_penalty: float = option(
        0.5,
        "subtracted from the score of a completion that never emits EOS",
    )
    reward_normalization: str = option(
        "none",
        "none (as in the paper) | prompt (per-prompt mean/std) | batch (batch mean/std); not ppo",
    )
    preference: str | None = option(
        None,
        "rebel: regress on P(y > y'|x) - 1/2 instead of rewards: builtin, module:fn, file.py:fn, "
        "model:PATH",
    )
    reward_timeout: float | None = option(
        None,
        "seconds per call of a module:fn, file.py:fn reward",
    )
    reward_failure_score: float | None = option(
        None,
        "score for failed/timed-out calls; None: stop",
    )
    reward_workers: int = option(
        1,
        "with reward_timeout: processes per file/module reward, a chunk each",
    )
    reward_max_consecutive_failures: int | None = option(None, "stop at N failed calls in a row")

    def validate(self, require_rewards: bool = True) -> None:
        check_non_negative(self, ["kl_coef"])
        check_choice("reward_normalization", self.reward_normalization, ["none", "prompt", "batch"])
        if not self.rewards and require_rewards and self.preference is None:
            raise ConfigError("rewards is empty: name at least one reward, e.g. --rewards "
                              "sentiment")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ConfigError(f"reward_weights has {len(self.reward_weights)} values for "
                              f"{len(self.rewards)} rewards: "
                              "give one weight per reward")
        if self.reward_timeout is not None and not self.reward_timeout > 0:
            raise ConfigError(f"reward_timeout must be > 0 seconds, got {self.reward_timeout}: "
                              "leave it unset (None) for no time-out")
        check_at_least_one(self, ["reward_workers"])
        if self.reward_workers > 1 and self.reward_timeout is None:
            raise ConfigError(f"reward_workers={self.reward_workers} needs reward_timeout (workers "
                              "run only with a time-out): set reward_timeout, or reward_workers: 1")
        if self.reward_max_consecutive_failures is not None:
            check_at_least_one(self, ["reward_max_consecutive_failures"])
        if self.preference is not None and self.reward_normalization != "none":
            raise ConfigError(f"reward_normalization {self.reward_normalization!r} does not apply "
                              "to a preference "
                              "(its target is P - 1/2): use none")


@dataclass
class EnvironmentConfig:
    """Multi-turn episodes: the policy talks to an environment for several turns
    (docs/multiturn.md)."""

    environment: str | None = option(
        None,
        "module:Class, file.py:Class or builtin:NAME; None = single-turn",
    )
    max_turns: int = option(4, "environment: most policy turns per episode")
    max_total_tokens: int = option(
        512,
        "environment: most tokens per episode (prompt excluded), all turns",
    )
    step_timeout: float | None = option(
        None,
        "environment: seconds per reset/step call; None = no limit",
    )
    step_failure_score: float | None = option(
        None,
        "environment: episode reward when a step fails; None = stop",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["max_turns", "max_total_tokens"])
        if self.step_timeout is not None and not self.step_timeout > 0:
            raise ConfigError(f"step_timeout must be > 0 seconds, got {self.step_timeout}: "
                              "leave it unset (None) for no time-out")
