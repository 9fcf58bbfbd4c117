"""Pairwise preference sources P(y > y' | x) for REBEL's general-preference variant (`--preference
SPEC`).

A preference is called as `f(prompts, completions_a, completions_b, **columns) -> list[float]`, one
value in [0, 1] per row: the probability that completion a is preferred to completion b for that
prompt (TRL's reward-function convention with a second list of completions). Specs, as for rewards:
- a builtin (builtin.BUILTIN_PREFERENCES): `tldr_judge_preference` (the gold judge of builtin:tldr:
  1 / 0.5 / 0, needs `facts`; registered by tasks/summarization_rewards.py);
- `module.sub:function` or `path/to/file.py:function`;
- `model:PATH` (or a folder): a pairwise classifier trained by `rebel preference-model`.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from rebel_rl.errors import RewardError
from rebel_rl.rewards.specs import _is_model_dir, parse_reward_spec
from rebel_rl.rewards.builtin import BUILTIN_PREFERENCES
from rebel_rl.rewards.functions import load_reward_function
from rebel_rl.rewards.reward_set import _call_reward, format_completion

SPEC_FORMS = (
    "a builtin ({builtins}), 'module.sub:function', 'path/to/file.py:function' or 'model:PATH'"
)


def _model_target(spec: str) -> str | None:
    """The folder or hub id a `model:` spec (or a bare model folder) names; None for other specs."""
    # preference builtins are not reward builtins, so only the model forms go through the parser
    if spec.startswith("model:") or _is_model_dir(spec):
        return parse_reward_spec(spec).target
    return None


def _unknown(spec: str) -> RewardError:
    forms = SPEC_FORMS.format(builtins=", ".join(sorted(BUILTIN_PREFERENCES)))
    return RewardError(f"unknown preference '{spec}': use {forms}")


def check_preference_spec(spec: str) -> None:
    """Validate a preference spec without loading weights; RewardError (one line) if it is
    invalid."""
    if spec in BUILTIN_PREFERENCES:
        return
    target = _model_target(spec)
    if target is not None:
        path = Path(target).expanduser()
        if not (path / "config.json").is_file():
            raise RewardError(f"preference model folder not found or without config.json: {target}")
        import json

        if not json.loads((path / "config.json").read_text()).get("pairwise_preference"):
            raise RewardError(
                f"'{target}' is not a pairwise preference model: train one with `rebel "
                f"preference-model`"
            )
    elif ":" in spec:
        load_reward_function(spec)
    else:
        raise _unknown(spec)


def resolve_preference(spec: str, device: str = "cpu") -> tuple[str, Callable]:
    """(name for logging, callable) for a preference spec, loading any model it names."""
    if spec in BUILTIN_PREFERENCES:
        return spec, BUILTIN_PREFERENCES[spec]
    target = _model_target(spec)
    if target is not None:
        from rebel_rl.rewards.preference_model import PreferenceModel

        return "preference_model", PreferenceModel(target, device=device)
    if ":" in spec:
        function = load_reward_function(spec)
        return getattr(function, "__name__", type(function).__name__), function
    raise _unknown(spec)


class Preference:
    """A preference source (spec or callable) with checked outputs, and the per-prompt matrix REBEL
    needs."""

    def __init__(self, spec: str | Callable, device: str = "cpu") -> None:
        if callable(spec):
            self.name, self.function = getattr(spec, "__name__", type(spec).__name__), spec
        else:
            self.name, self.function = resolve_preference(spec, device)

    def __call__(self, prompts: list, completions_a: list[str], completions_b: list[str],
                 columns: dict[str, list] | None = None) -> torch.Tensor:
        """P(a > b | x) per row (float32), completions formatted as for rewards; RewardError for a
        wrong count, a non-finite value or one outside [0, 1]."""
        a = [format_completion(p, c) for p, c in zip(prompts, completions_a, strict=True)]
        b = [format_completion(p, c) for p, c in zip(prompts, completions_b, strict=True)]
        values = _call_reward(
            self.name, lambda ps, cs, **k: self.function(ps, cs, b, **k), prompts, a, columns or {}
        )
        outside = ((values < 0) | (values > 1)).nonzero()
        if len(outside):
            index = int(outside[0, 0])
            raise RewardError(
                f"preference '{self.name}' returned {float(values[index])} at index {index}: "
                "a preference is a probability in [0, 1]"
            )
        return values

    def matrix(
        self, prompts: list, completions: list[str], columns: dict[str, list], n: int
    ) -> torch.Tensor:
        """(N, n) for N = num_prompts * n rows, n consecutive per prompt: row p*n + i holds P(y_i >
        y_j | x_p) for j = 0..n-1 (0.5 for j = i). One query per pair i < j; P(y_j > y_i) is taken
        as 1 - P(y_i > y_j)."""
        num_prompts = len(completions) // n
        i, j = torch.triu_indices(n, n, offset=1)
        first = (torch.arange(num_prompts)[:, None] * n + i).flatten().tolist()
        second = (torch.arange(num_prompts)[:, None] * n + j).flatten().tolist()
        values = self(
            [prompts[r] for r in first],
            [completions[r] for r in first],
            [completions[r] for r in second],
            {k: [v[r] for r in first] for k, v in columns.items()},
        ).view(num_prompts, -1)
        out = torch.full((num_prompts, n, n), 0.5)
        out[:, i, j] = values
        out[:, j, i] = 1 - values
        return out.view(num_prompts * n, n)


class NoRewards:
    """Stands in for a RewardSet when a run trains on a preference alone: every score is 0."""

    names: list[str] = []

    def __call__(
        self,
        prompts: list,
        completions: list,
        columns: dict | None = None,
        extras: dict | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return torch.zeros(len(completions)), {}

    def take_counts(self) -> dict[str, float]:
        """No rewards, so no time-outs or failures to log."""
        return {}
