"""Reward specs checked cheaply, before any model or heavy library loads (the command line asks
these before the trainer imports torch): builtin names, `model:PATH` folders or hub ids,
`module:fn`, `file.py:fn`."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rebel_rl.errors import RewardError
from rebel_rl.rewards.builtin import BUILTIN_REWARDS
from rebel_rl.rewards.functions import load_reward_function

SPEC_FORMS = (
    "a builtin ({builtins}), 'module.sub:function', 'path/to/file.py:function', "
    "'model:PATH' or a reward-model folder"
)


def _unknown(spec: str) -> RewardError:
    """The one-line error for a spec that matches none of the accepted forms."""
    forms = SPEC_FORMS.format(builtins=", ".join(sorted(BUILTIN_REWARDS)))
    return RewardError(f"unknown reward '{spec}': use {forms}")


def _is_model_dir(spec: str) -> bool:
    """Whether `spec` is an existing folder holding a config.json (a saved reward model)."""
    path = Path(spec).expanduser()
    return path.is_dir() and (path / "config.json").is_file()


@dataclass(frozen=True)
class RewardSpec:
    """One parsed reward spec: kind is "builtin", "module", "file" or "model"."""

    kind: str
    target: str
    attribute: str | None = None


def parse_reward_spec(spec: str) -> RewardSpec:
    """Parse a reward spec by its grammar alone (no imports, no file reads beyond a folder check).

    `NAME` is a builtin, `model:PATH` (or a folder with a config.json) a reward model,
    `path/file.py:fn` a function in a file, `module.sub:fn` a function in a module; anything else
    raises one RewardError line listing the accepted forms.
    """
    if spec in BUILTIN_REWARDS:
        return RewardSpec("builtin", spec)
    if spec.startswith("model:"):
        return RewardSpec("model", spec.removeprefix("model:"))
    if _is_model_dir(spec):
        return RewardSpec("model", spec)
    target, sep, attribute = spec.rpartition(":")
    if sep and target and attribute:
        return RewardSpec("file" if target.endswith(".py") else "module", target, attribute)
    raise _unknown(spec)


def check_reward_spec(spec: str) -> None:
    """Validate a reward spec cheaply, without loading model weights; RewardError if it is invalid.

    Builtins must exist, functions must import and be callable, and reward-model folders must
    hold a config.json with num_labels=1; a non-local `model:` target must look like a hub id.
    """
    parsed = parse_reward_spec(spec)
    if parsed.kind == "model":
        _check_model_target(parsed.target)
    elif parsed.kind in ("module", "file"):
        load_reward_function(spec)


def _check_model_target(target: str) -> None:
    """Check a reward-model folder (config.json, num_labels) or the shape of a hub id."""
    path = Path(target).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RewardError(
                f"reward model folder {target} has no config.json: give a saved model folder"
            )
        from transformers import AutoConfig

        labels = AutoConfig.from_pretrained(str(path)).num_labels
        if labels != 1:
            raise RewardError(
                f"reward model '{target}' has num_labels={labels}: it must output one score"
            )
        return
    parts = target.split("/")
    if path.exists() or len(parts) > 2 or not all(parts) or target.startswith((".", "~")):
        raise RewardError(f"reward model folder not found: {target} (check the path)")
