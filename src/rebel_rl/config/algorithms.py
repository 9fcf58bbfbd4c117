"""The algorithm registry: every online algorithm, once, with what it needs and supports.

An entry names the algorithm's option group (a small dataclass with `validate()`, e.g. REBEL's eta),
its Objective class (which turns a batch into its loss), a one-line summary of that loss for the
README's table, and what it works with: how many samples per prompt, which policy kinds, pair
sources, preferences, reward normalisation, sharded training. Each entry is written at the bottom
of its algorithm's module (training/online/methods/<name>.py), which imports no torch until a run
trains; this module only holds the entries, so that the config, the policy factory and the
sharding checks can ask it without importing the training layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError


@dataclass(frozen=True)
class AlgorithmSpec:
    """One online algorithm: its name, option group, objective, and what it supports."""

    name: str
    objective: Any  # its Objective class; `objective.build(options, context)` makes it for a run
    options: type | None = None  # its option group (a dataclass with `validate()`), or None
    min_generations: int = 1  # samples per prompt it needs (2 for algorithms that compare samples)
    policy_kinds: tuple[str, ...] = ("causal_lm",)  # the policy kinds (policies/) it trains
    other_kind_hint: str = ""  # the fix to name when the policy is of another kind
    # where its completions may come from (REBEL also: hybrid, offline)
    pair_sources: tuple[str, ...] = ("online",)
    preferences: bool = False  # whether it can regress on a preference instead of rewards
    pairings: tuple[str, ...] = ("all",)  # how samples of a prompt are paired
    # why it refuses reward_normalization other than none, if it does
    reward_normalization: str | None = None
    sharding: bool = True  # whether it trains under FSDP2
    # How its rollouts are sampled (training/online/pairs.py): "samples", n independent samples
    # per prompt (n independent episodes with an environment); "single_turn", the same but it
    # refuses an environment; "branched", n episodes per prompt continuing one shared prefix
    # from a random turn (REFUEL), so it needs an environment.
    rollout: str = "samples"
    # The paper it comes from (title, authors, venue, arXiv id) and its BibTeX entry: the model
    # card of a run cites them.
    paper: str = ""
    bibtex: str = ""
    label: str = ""  # its name in tables and cards ("Iterative DPO"); default: the name
    summary: str = ""  # its loss in one line, for the README's table of algorithms


_REGISTRY: dict[str, AlgorithmSpec] = {}
# Written in a field's help, replaced by `algorithm_choices()` (config/base.py reads it).
ALGORITHMS_PLACEHOLDER = "{algorithms}"


def register_algorithm(spec: AlgorithmSpec) -> AlgorithmSpec:
    """Add `spec` to the registry (a name registered twice is a programming error)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"algorithm {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def algorithm_names() -> list[str]:
    """Registered algorithm names, in registration order."""
    return list(_REGISTRY)


def algorithm_choices() -> str:
    """The registered names as `--help` lists them ("rebel | ppo | ... | ddpo for diffusion"): an
    algorithm that trains no causal LM names the policy kinds it does train."""
    return " | ".join(spec.name if "causal_lm" in spec.policy_kinds
                      else f"{spec.name} for {' or '.join(spec.policy_kinds)}"
                      for spec in _REGISTRY.values())


def algorithm_spec(name: str) -> AlgorithmSpec:
    """The entry of algorithm `name`; ConfigError naming the registered ones if there is none."""
    if name not in _REGISTRY:
        raise ConfigError(f"algorithm must be one of {', '.join(_REGISTRY)}; got {name!r}")
    return _REGISTRY[name]


def option_groups() -> dict[str, type]:
    """Each registered algorithm's option group, by algorithm name (the config's per-algorithm
    groups)."""
    return {name: spec.options for name, spec in _REGISTRY.items() if spec.options is not None}
