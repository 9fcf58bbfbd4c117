"""Load an environment from a spec: `builtin:NAME`, `module.sub:Class`, `path/file.py:Class`, or a
Python object (a class, or any zero-argument callable returning an instance).

What is loaded is a factory: calling it makes one fresh environment per episode (episodes.py says
one instance plays one episode). The grammar is the reward specs' (rewards/specs.py); only the
`builtin:` prefix is new, because an environment name has no bare form that could be mistaken for
a module. Built-in environments are registered by tasks/ (a layer above) into BUILTIN_ENVIRONMENTS.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rebel_rl.errors import ConfigError, EpisodeError, RewardError, first_line
from rebel_rl.registry import Registry
from rebel_rl.rewards.functions import load_reward_function
from rebel_rl.rewards.specs import parse_reward_spec

BUILTIN_ENVIRONMENTS: Registry[Callable[[], Any]] = Registry("built-in environment")
FORMS = "'builtin:NAME', 'module.sub:Class', 'path/to/file.py:Class' or a class from Python"


def register_environment(name: str, factory: Callable[[], Any] | str) -> None:
    """Register a built-in environment `builtin:NAME`: a class or zero-argument factory, or a
    "module:attribute" reference to one (imported on first use, so registering costs nothing)."""
    BUILTIN_ENVIRONMENTS.register(name, factory)


def environment_name(spec: Any) -> str:
    """The name messages use for an environment spec: the spec string, or the object's name."""
    if isinstance(spec, str):
        return spec
    return getattr(spec, "__qualname__", None) or type(spec).__name__


def load_environment(spec: Any) -> Callable[[], Any]:
    """The factory named by `spec`; calling it returns one new environment for one episode.

    A string is `builtin:NAME`, `module.sub:Class` or `path/to/file.py:Class`; any other callable
    is taken as the factory itself. Raises ConfigError for a malformed or unknown spec and
    EpisodeError for a target that does not import, is not callable, or is a class without
    callable `reset` and `step`; an instance's methods are checked when it is made (`make`).
    """
    name = environment_name(spec)
    if not isinstance(spec, str):
        if not callable(spec):
            raise ConfigError(f"environment {name!r} is a {type(spec).__name__}: give a class, a "
                              f"zero-argument factory, or a spec string ({FORMS})")
        factory = spec
    elif spec.startswith("builtin:"):
        factory = _builtin(spec.removeprefix("builtin:"))
    else:
        factory = _imported(spec)
    if isinstance(factory, type):
        _check_methods(name, factory)
    return factory


def make(factory: Callable[[], Any], name: str) -> Any:
    """One environment from `factory`, checked for callable `reset` and `step`: one EpisodeError
    line naming the environment if the factory raises or returns something else."""
    try:
        environment = factory()
    except Exception as exc:
        raise EpisodeError(f"environment '{name}' could not be created: "
                               f"{type(exc).__name__}: {first_line(exc)}") from None
    _check_methods(name, environment)
    return environment


def _builtin(name: str) -> Callable[[], Any]:
    """The registered built-in environment `name`, or one ConfigError line naming the known."""
    if name not in BUILTIN_ENVIRONMENTS:
        known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_ENVIRONMENTS)) or "none"
        raise ConfigError(f"unknown environment 'builtin:{name}': the built-ins are {known}")
    return BUILTIN_ENVIRONMENTS[name]


def _imported(spec: str) -> Callable[[], Any]:
    """Import `module:Class` or `file.py:Class` with the reward loader (same grammar, same file
    handling), its messages reworded for an environment."""
    try:
        parsed = parse_reward_spec(spec)
    except RewardError:
        parsed = None
    if parsed is None or parsed.kind not in ("module", "file"):
        raise ConfigError(f"unknown environment '{spec}': use {FORMS}")
    try:
        return load_reward_function(spec)
    except RewardError as exc:
        detail = str(exc).replace("reward function", "attribute").replace("reward ", "")
        raise EpisodeError(f"environment '{spec}' does not load: {detail}") from None


def _check_methods(name: str, target: Any) -> None:
    """EpisodeError unless `target` (a class or an instance) has callable reset and step."""
    missing = [m for m in ("reset", "step") if not callable(getattr(target, m, None))]
    if missing:
        raise EpisodeError(
            f"environment '{name}' has no {' or '.join(missing)} method: an environment needs "
            "reset(row) -> messages and step(text) -> (messages, reward, done); wrap an OpenEnv "
            "or TRL environment with from_openenv / from_trl (docs/multiturn.md)"
        )

