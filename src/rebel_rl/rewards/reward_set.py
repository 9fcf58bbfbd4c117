"""Reward specs resolved into callables (built-ins, user functions, reward models) and combined with weights.

All rewards follow the TRL convention `f(prompts, completions, **columns) -> list[float]`. As in TRL, a
function that names `completion_ids` or `trainer_state` (or takes `**kwargs`) also receives the completions'
token ids and the trainer's state, and a reward may return None for a sample it does not apply to: the
weighted sum then skips it (NaN-sum over the rewards, so a sample no reward applies to scores 0, with a
warning), and that reward's logged mean is over the samples it scored.
"""
from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from rebel_rl.data.prompts import is_conversational
from rebel_rl.errors import ConfigError, RewardError
from rebel_rl.rewards.builtin import BUILTIN_REWARDS
from rebel_rl.rewards.functions import load_reward_function
from rebel_rl.rewards.specs import check_reward_spec, parse_reward_spec  # noqa: F401 (re-exported)
from rebel_rl.rewards.reward_model import RewardModel


def resolve_reward(spec: str, device: str = "cpu") -> tuple[str, Callable]:
    """Turn a reward spec into (name for logging, callable), loading any model it names.

    Accepted: a builtin name, `model:PATH`, `module.sub:function`, `path/to/file.py:function`, or
    an existing folder with a config.json (a reward model). RewardError for anything else.
    """
    parsed = parse_reward_spec(spec)
    if parsed.kind == "builtin":
        return spec, BUILTIN_REWARDS[spec]
    if parsed.kind == "model":
        return "reward_model", RewardModel(parsed.target, device=device)
    function = load_reward_function(spec)
    return getattr(function, "__name__", type(function).__name__), function


class RewardSet:
    """Several reward specs with weights; calling it scores completions with each and sums them."""

    def __init__(
        self, specs: list[str | Callable], weights: list[float] | None = None, device: str = "cpu"
    ) -> None:
        """Resolve every spec (loading reward models on `device`); a callable is used as it is.

        Weights default to 1.0 each.
        """
        if not specs:
            raise ConfigError("no reward given: set at least one reward (e.g. reward: sentiment)")
        weights = [1.0] * len(specs) if weights is None else [float(w) for w in weights]
        if len(weights) != len(specs):
            raise ConfigError(
                f"{len(weights)} reward weights for {len(specs)} rewards: give one weight per reward"
            )
        resolved = [
            (getattr(spec, "__name__", type(spec).__name__), spec) if callable(spec) else resolve_reward(spec, device)
            for spec in specs
        ]
        self._names = _deduplicate([name for name, _ in resolved])
        self.trainer_state: Any = None  # set by the trainer: passed as `trainer_state` to rewards that take it
        self.functions = [function for _, function in resolved]
        self.weights = weights

    @property
    def names(self) -> list[str]:
        """Unique logging names, one per reward, in spec order."""
        return list(self._names)

    def __call__(
        self, prompts: list, completions: list[str], columns: dict[str, list] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Score completions: return the weighted total (float32, shape (N,)) and each raw reward
        (NaN where it returned None).

        Plain completion strings are passed to rewards as strings for string prompts and as
        `[{"role": "assistant", "content": text}]` for conversational prompts; `columns` (other
        dataset columns, aligned with the completions) are passed as keyword arguments, and so are
        `extras` (`completion_ids`, `trainer_state`) to the functions whose signature takes them.
        """
        formatted = [format_completion(p, c) for p, c in zip(prompts, completions, strict=True)]
        if self.trainer_state is not None:
            extras = {**(extras or {}), "trainer_state": self.trainer_state}
        per_reward = {
            name: _call_reward(name, function, prompts, formatted, {**(columns or {}), **_accepted(function, extras)})
            for name, function in zip(self._names, self.functions)
        }
        stacked = torch.stack(list(per_reward.values()), dim=1)  # (N, rewards)
        total = (stacked * torch.tensor(self.weights, dtype=torch.float32)).nansum(dim=1)
        unscored = stacked.isnan().all(dim=1)
        if unscored.any():
            warnings.warn(f"every reward returned None for {int(unscored.sum())} completion(s): they score 0",
                          stacklevel=2)
        return total, per_reward


def _accepted(function: Callable, extras: dict[str, Any] | None) -> dict[str, Any]:
    """The `extras` that `function`'s signature takes by name (all of them with **kwargs)."""
    if not extras:
        return {}
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return dict(extras)
    return {key: value for key, value in extras.items() if key in parameters}


def format_completion(prompt: Any, completion: str) -> str | list[dict]:
    """A completion in the TRL format matching its prompt: str, or a one-message assistant list."""
    if is_conversational(prompt):
        return [{"role": "assistant", "content": completion}]
    return completion


def _call_reward(
    name: str, function: Callable, prompts: list, completions: list, columns: dict[str, list]
) -> torch.Tensor:
    """Call one reward and check it returned one finite number per completion."""
    try:
        output = function(prompts, completions, **columns)
    except RewardError:
        raise
    except Exception as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RewardError(f"reward '{name}' raised {type(exc).__name__}: {message}") from None
    values = _as_floats(name, output)
    if len(values) != len(completions):
        raise RewardError(
            f"reward '{name}' returned {len(values)} values for {len(completions)} completions"
        )
    return torch.tensor(values, dtype=torch.float32)


def _as_floats(name: str, output: Any) -> list[float]:
    """Convert a reward's output to a list of finite floats (None, "not applicable", becomes NaN),
    naming the first bad entry."""
    if isinstance(output, torch.Tensor):
        output = output.detach().cpu().reshape(-1).tolist()
    if isinstance(output, (str, bytes, dict)) or not hasattr(output, "__len__"):
        raise RewardError(
            f"reward '{name}' returned {type(output).__name__}: it must return a list of floats"
        )
    values = []
    for index, value in enumerate(output):
        if value is None:
            values.append(math.nan)
            continue
        number = _as_float(value)
        if number is None or not math.isfinite(number):
            raise RewardError(
                f"reward '{name}' returned {value!r:.40} at index {index}: rewards must be finite numbers (or None: not applicable)"
            )
        values.append(number)
    return values


def _as_float(value: Any) -> float | None:
    """`value` as a float if it is a number (bools count as 0/1), else None (str, None, objects)."""
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _deduplicate(names: list[str]) -> list[str]:
    """Make names unique by suffixing repeats: sentiment, sentiment_2, sentiment_3."""
    unique: list[str] = []
    for name in names:
        candidate, count = name, 1
        while candidate in unique:
            count += 1
            candidate = f"{name}_{count}"
        unique.append(candidate)
    return unique

