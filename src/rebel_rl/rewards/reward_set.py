"""Reward specs resolved into callables (built-ins, user functions, reward models), combined with
weights.

All rewards follow the TRL convention `f(prompts, completions, **columns) -> list[float]`. As in
TRL, a function that names `completion_ids` or `trainer_state` (or takes `**kwargs`) also receives
the completions' token ids and the trainer's state, and a reward may return None for a sample it
does not apply to: the weighted sum then skips it (NaN-sum over the rewards, so a sample no reward
applies to scores 0, with a warning), and that reward's logged mean is over the samples it scored.
Time-outs, failure scores and async rewards: isolation.py and docs/rewards.md.
"""
from __future__ import annotations

import asyncio
import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import torch

from rebel_rl.data.prompts import is_conversational
from rebel_rl.errors import ConfigError, RewardError, first_line
from rebel_rl.rewards.builtin import BUILTIN_REWARDS
from rebel_rl.rewards.functions import load_reward_function
from rebel_rl.rewards.isolation import (
    RewardFailureWarning, RewardPool, RewardTimeout, call_reward_function, check_worker_count,
    is_async_reward, outcome, run_coroutine,
)
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
        self, specs: list[str | Callable], weights: list[float] | None = None, device: str = "cpu",
        timeout: float | None = None, failure_score: float | None = None, workers: int = 1,
        max_consecutive_failures: int | None = None,
    ) -> None:
        """Resolve every spec (loading reward models on `device`); a callable is used as it is.

        Weights default to 1.0 each. With `timeout`, each `module:fn` / `file.py:fn` reward runs in
        a pool of `workers` processes (a contiguous chunk of the batch each, one call per chunk)
        and an async reward is cancelled past it; `failure_score` is what every sample of a call
        that timed out or failed scores (None: that call raises RewardError), and after
        `max_consecutive_failures` such calls of one reward in a row a RewardError stops the run.
        """
        if not specs:
            raise ConfigError("no reward given: set at least one reward (e.g. reward: sentiment)")
        weights = [1.0] * len(specs) if weights is None else [float(w) for w in weights]
        if len(weights) != len(specs):
            raise ConfigError(
                f"{len(weights)} reward weights for {len(specs)} rewards: give one weight per "
                "reward"
            )
        resolved = [
            (getattr(spec, "__name__", type(spec).__name__), spec) if callable(spec)
            else resolve_reward(spec, device) for spec in specs
        ]
        self._names = _deduplicate([name for name, _ in resolved])
        # set by the trainer: passed as `trainer_state` to the rewards that take it
        self.trainer_state: Any = None
        self.functions = [function for _, function in resolved]
        self.weights = weights
        self.timeout, self.failure_score = timeout, failure_score
        self.max_consecutive_failures = max_consecutive_failures
        self._pools = {
            name: RewardPool(name, spec, timeout, workers) for name, spec in zip(self._names, specs)
            if timeout is not None and isinstance(spec, str)
            and parse_reward_spec(spec).kind in ("module", "file")
        }
        if self._pools:
            check_worker_count(workers)
        self._counts = {name: {"timeouts": 0, "failures": 0} for name in self._names}
        self._streaks = dict.fromkeys(self._names, 0)  # failed calls in a row, per reward
        self._warned: set[str] = set()

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
        keywords = {name: {**(columns or {}), **_accepted(function, extras)}
                    for name, function in zip(self._names, self.functions)}
        outcomes = self._call_all(prompts, formatted, keywords)
        per_reward = {name: torch.cat([self._scores(name, result, stop - start)
                                       for start, stop, result in outcomes[name]])
                      for name in self._names}
        stacked = torch.stack(list(per_reward.values()), dim=1)  # (N, rewards)
        total = (stacked * torch.tensor(self.weights, dtype=torch.float32)).nansum(dim=1)
        unscored = stacked.isnan().all(dim=1)
        if unscored.any():
            warnings.warn(f"every reward returned None for {int(unscored.sum())} completion(s): "
                          "they score 0", stacklevel=2)
        return total, per_reward


    def _call_all(
        self, prompts: list, completions: list, keywords: dict[str, dict]
    ) -> dict[str, list[tuple[int, int, Any]]]:
        """Each reward's calls as (start row, stop row, raw output or the exception the call ended
        with): one call of every row in this process, one per chunk in a worker pool. Pool calls
        are sent first and collected last, so they run alongside the in-process ones; async
        rewards in this process are awaited together (as TRL gathers them)."""
        for name, pool in self._pools.items():
            pool.submit(prompts, completions, keywords[name])
        outcomes: dict[str, Any] = {}
        coroutines = {}
        for name, function in zip(self._names, self.functions):
            if name in self._pools:
                continue
            if is_async_reward(function):
                coroutines[name] = function(prompts, completions, **keywords[name])
            else:
                outcomes[name] = outcome(call_reward_function, function, prompts, completions,
                                         keywords[name])
        if coroutines:
            outcomes.update(zip(coroutines, run_coroutine(self._gather(list(coroutines.values())))))
        calls = {name: [(0, len(completions), result)] for name, result in outcomes.items()}
        calls.update((name, pool.collect()) for name, pool in self._pools.items())
        return calls

    async def _gather(self, coroutines: list) -> list:
        """Await the coroutines concurrently, each bounded by the time-out; exceptions returned."""
        if self.timeout is not None:
            coroutines = [asyncio.wait_for(c, self.timeout) for c in coroutines]
        results = await asyncio.gather(*coroutines, return_exceptions=True)
        return [RewardTimeout(f"timed out after {self.timeout:g} s")
                if isinstance(r, asyncio.TimeoutError) else r for r in results]

    def _scores(self, name: str, outcome: Any, count: int) -> torch.Tensor:
        """One call's checked scores; a timed-out or failed call scores `failure_score` per
        sample (counted, warned once) or, without one or past the limit of failed calls in a row,
        raises a RewardError naming the reward."""
        try:
            if isinstance(outcome, BaseException):
                raise outcome
            scores = _checked(name, outcome, count)
            self._streaks[name] = 0
            return scores
        except RewardTimeout:
            self._counts[name]["timeouts"] += 1
            problem = f"reward '{name}' timed out after {self.timeout:g} s (reward_timeout)"
            advice = ": speed it up, raise reward_timeout, or set reward_failure_score"
        except RewardError as exc:
            self._counts[name]["failures"] += 1
            problem, advice = str(exc), ""
        except Exception as exc:
            self._counts[name]["failures"] += 1
            problem, advice = _raised(name, exc), ""
        if self.failure_score is None:
            raise RewardError(problem + advice) from None
        self._streaks[name] += 1
        limit = self.max_consecutive_failures
        if limit is not None and self._streaks[name] >= limit:
            raise RewardError(
                f"reward '{name}' failed {self._streaks[name]} calls in a row "
                f"(reward_max_consecutive_failures={limit}), the last: {problem}; fix the reward "
                "or raise reward_max_consecutive_failures"
            )
        if name not in self._warned:
            self._warned.add(name)
            warnings.warn(f"{problem}; its samples score "
                          f"reward_failure_score={self.failure_score:g} (counted in "
                          f"rewards/{name}/timeouts and failures)",
                          RewardFailureWarning, stacklevel=3)
        return torch.full((count,), float(self.failure_score), dtype=torch.float32)

    def take_counts(self) -> dict[str, float]:
        """`rewards/NAME/timeouts` and `rewards/NAME/failures` since the last take, for the log;
        empty unless a time-out or a failure score is set (runs without them log as before)."""
        if self.timeout is None and self.failure_score is None:
            return {}
        counts = {f"rewards/{name}/{kind}": float(n)
                  for name, kinds in self._counts.items() for kind, n in kinds.items()}
        self._counts = {name: {"timeouts": 0, "failures": 0} for name in self._names}
        return counts

    def close(self) -> None:
        """Stop the reward worker processes (they also end with this process)."""
        for pool in self._pools.values():
            pool.close()


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
    """Call one reward in this process and check its output; any failure is one RewardError line."""
    try:
        output = call_reward_function(function, prompts, completions, columns)
    except RewardError:
        raise
    except Exception as exc:
        raise RewardError(_raised(name, exc)) from None
    return _checked(name, output, len(completions))


def _raised(name: str, exc: BaseException) -> str:
    """The one line for a reward that raised: its name, the exception type and first line."""
    message = first_line(exc) if str(exc).strip() else ""
    return f"reward '{name}' raised {type(exc).__name__}: {message}"


def _checked(name: str, output: Any, count: int) -> torch.Tensor:
    """A reward's output as float32 scores, checked to be one finite number (or None) per sample."""
    values = _as_floats(name, output)
    if len(values) != count:
        raise RewardError(f"reward '{name}' returned {len(values)} values for {count} completions")
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
                f"reward '{name}' returned {value!r:.40} at index {index}: rewards must be "
                "finite numbers (or None: not applicable)"
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

