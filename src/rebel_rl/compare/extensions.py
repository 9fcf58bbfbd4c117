"""REBEL's extensions as extra methods of `rebel compare` (not in the default grid): each is an
algorithm plus config overrides plus a label, and keeps the shared budget of reward queries per
iteration.

    rebel compare --algorithms rebel rebel_hybrid rebel_offline rebel_judge_preference rebel_n4 \\
                  rebel_best_worst4 --report_dir docs --report_section extensions

Every variant starts from REBEL's tuned settings (tuned.py) and changes only what its extension
needs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .task import JUDGE, PREFERENCES, SFT_DATA, TASK


class Budget(Protocol):
    """What an extension reads of the CompareConfig, the shared budget per iteration (config.py
    imports this module to list the extensions, so the CompareConfig is not imported here)."""

    num_generations: int
    prompts_per_iteration: int


@dataclass(frozen=True)
class Extension:
    """One extra method: the algorithm whose tuned settings it starts from, its overrides, its
    label."""

    algorithm: str
    label: str
    description: str
    overrides: Callable[[Budget, str], dict[str, Any]]  # (config, reward-model folder) -> overrides


def _hybrid(config: Budget, reward_model: str) -> dict[str, Any]:
    # builtin:tldr_sft holds the same training posts in the same order as builtin:tldr, with the
    # reference summary as a TRL completion (leading space: tokenized exactly as the SFT model
    # learnt it).
    return {
        "pair_source": "hybrid",
        "completion_columns": ["completion"],
        "dataset": SFT_DATA,
        "eval_dataset": TASK,
    }


def _offline(config: Budget, reward_model: str) -> dict[str, Any]:
    return {
        "pair_source": "offline",
        "completion_columns": ["chosen", "rejected"],
        "dataset": PREFERENCES,
        "eval_dataset": TASK,
    }


def _judge_preference(config: Budget, reward_model: str) -> dict[str, Any]:
    # No reward model in training: the judge's pairwise verdict is the signal. The RM is scored only
    # at evaluation (eval_rewards), so the learning curves still show it.
    return {
        "preference": "tldr_judge_preference",
        "rewards": [],
        "eval_rewards": [*JUDGE, f"model:{reward_model}"],
    }


def _more_samples(pairing: str) -> Callable[[Budget, str], dict[str, Any]]:
    def overrides(config: Budget, reward_model: str) -> dict[str, Any]:
        # twice the samples per prompt on half the prompts: the same reward queries per iteration
        return {
            "num_generations": 2 * config.num_generations,
            "prompts_per_iteration": config.prompts_per_iteration // 2,
            "pairing": pairing,
        }
    return overrides


EXTENSIONS: dict[str, Extension] = {
    "rebel_hybrid": Extension(
        "rebel",
        "REBEL hybrid",
        "each prompt's pair is one sample from π_t and the dataset's "
        "reference summary (scored by the RM: a reward query too)",
        _hybrid,
    ),
    "rebel_offline": Extension(
        "rebel",
        "REBEL offline",
        "both completions from the preference data (chosen, "
        "rejected), scored by the RM; no sampling during training",
        _offline,
    ),
    "rebel_judge_preference": Extension(
        "rebel",
        "REBEL judge preference",
        "two samples, regressed onto P(y ≻ y′) − 1/2 "
        "from the gold judge's pairwise verdict (no reward model in training)",
        _judge_preference,
    ),
    "rebel_n4": Extension(
        "rebel",
        "REBEL n=4",
        "4 samples per prompt on half the prompts, all 6 pairs regressed",
        _more_samples("all"),
    ),
    "rebel_best_worst4": Extension(
        "rebel",
        "REBEL best-vs-worst of 4",
        "4 samples per prompt on half the prompts, only "
        "the highest- against the lowest-reward sample regressed",
        _more_samples("best_worst"),
    ),
}
LABELS = {name: extension.label for name, extension in EXTENSIONS.items()}


def extension_settings(
    name: str, tuned: dict[str, dict], config: Budget, reward_model: str
) -> dict[str, Any]:
    """The settings of extension `name`: its algorithm's tuned settings, the algorithm itself, its
    overrides."""
    extension = EXTENSIONS[name]
    return {**tuned.get(extension.algorithm, {}), "algorithm": extension.algorithm,
            **extension.overrides(config, reward_model)}
