"""Rewards: built-ins, user functions and reward models, resolved from specs and combined with
weights.

All rewards follow the TRL convention `f(prompts, completions, **columns) -> list[float]`. The names
below are imported on first use (reward_set.py pulls in torch and transformers), so the registries
in builtin.py stay cheap to import.
"""
from __future__ import annotations

import importlib
from typing import Any

# name -> the module of this package that defines it
_EXPORTS = {
    "BUILTIN_REWARDS": "builtin",
    "completion_text": "builtin",
    "length": "builtin",
    "sentiment": "builtin",
    "RewardModel": "reward_model",
    "load_reward_function": "functions",
    "RewardSet": "reward_set",
    "check_reward_spec": "specs",
    "parse_reward_spec": "specs",
    "RewardSpec": "specs",
    "format_completion": "reward_set",
    "resolve_reward": "reward_set",
    "RewardFailureWarning": "isolation",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(name)
