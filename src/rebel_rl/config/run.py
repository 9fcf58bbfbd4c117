"""`RebelConfig`, the options of an online run, in groups by layer.

Each group is a small dataclass that validates itself and is all its component receives: the policy
factory gets `model` and `sampling`, the data loader `data`, the reward set `reward`, the loop
`training`, evaluation `evaluation`, the run folder `output`, and each algorithm its own option
group (registered with the algorithm, training/online/methods/). Each field's `option(default,
help)` is the reference docs (`rebel train --help`, docs/configuration.md). `RebelConfig` checks
what spans groups, with the algorithm registry.
"""
from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from .algorithms import algorithm_names, algorithm_spec, option_groups
from .base import GroupedConfig

# The groups themselves live in policy.py, episodes.py and loop.py; re-exported here so that
# `from ...config.run import TrainingConfig` (training/, stage_configs.py, tests) keeps working.
from .episodes import DEFAULT_DATASET, DataConfig, EnvironmentConfig, RewardConfig
from .loop import (
    LR_SCHEDULERS,
    TRACKERS,
    EvalConfig,
    OptimizerConfig,
    OutputConfig,
    OutputConfigBase,
    TrainingConfig,
)
from .policy import (
    DEFAULT_MODEL,
    DTYPES,
    MIXED_PRECISION,
    LoraConfig,
    ModelConfig,
    SamplingConfig,
    WeightsConfig,
)

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_MODEL",
    "DTYPES",
    "LATE_GROUPS",
    "LR_SCHEDULERS",
    "MIXED_PRECISION",
    "RUN_GROUPS",
    "TRACKERS",
    "DataConfig",
    "EnvironmentConfig",
    "EvalConfig",
    "LoraConfig",
    "ModelConfig",
    "OptimizerConfig",
    "OutputConfig",
    "OutputConfigBase",
    "RebelConfig",
    "RewardConfig",
    "SamplingConfig",
    "TrainingConfig",
    "WeightsConfig",
]


# The groups every online run has, in the order of --help; then one group per registered algorithm.
RUN_GROUPS = {"model": ModelConfig, "data": DataConfig, "reward": RewardConfig,
              "sampling": SamplingConfig,
              "environment": EnvironmentConfig, "training": TrainingConfig}
LATE_GROUPS = {"evaluation": EvalConfig, "output": OutputConfig}


class RebelConfig(GroupedConfig):
    """All options of an online RL run (REBEL by default), in groups; `RebelConfig(eta=0.5, ...)`
    takes flat names, `RebelConfig(ppo={"clip_range": 0.1})` a group. A name several algorithms
    share (`clip_range`) given flat applies to the chosen algorithm's group. Each field's
    `option(...)` help is the reference docs."""

    @classmethod
    def groups(cls) -> dict[str, type]:
        return {**RUN_GROUPS, **option_groups(), **LATE_GROUPS}

    @classmethod
    def shared_groups(cls) -> set[str]:
        return set(option_groups())

    def active_group(self, owners: list[str]) -> str | None:
        algorithm = self._groups["training"].algorithm
        return algorithm if algorithm in owners else None

    def upgrade(self, pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """A config saved before DDPO had its own clip_range (its `ddpo` group then held
        `ddpo_buffer_size`) clipped DDPO's ratio with `ppo.clip_range`: keep that value."""
        keys = dict(pairs)
        if ("ddpo.ddpo_buffer_size" in keys and "ddpo.clip_range" not in keys
                and "ppo.clip_range" in keys):
            pairs = [*pairs, ("ddpo.clip_range", keys["ppo.clip_range"])]
        return pairs

    def validate(self, require_rewards: bool = True) -> "RebelConfig":
        """Check every group, then what spans groups (the algorithm's needs); raise one ConfigError
        line for the first problem found. `require_rewards=False` accepts an empty `rewards` list
        (the Python API, where `reward_funcs` supplies the rewards). Also fills in a fresh,
        timestamped output_dir."""
        self.check_finite()
        # An environment's episode return is a reward of its own: `rewards` may then be empty.
        require_rewards = require_rewards and self.environment.environment is None
        for name, group in self._groups.items():
            group.validate(require_rewards) if name == "reward" else group.validate()
        sampling, training = self.sampling, self.training
        if training.minibatch_prompts is None:
            training.minibatch_prompts = sampling.prompts_per_iteration
        if sampling.prompts_per_iteration % training.minibatch_prompts:
            raise ConfigError(f"prompts_per_iteration ({sampling.prompts_per_iteration}) must be a "
                              "multiple of "
                              f"minibatch_prompts ({training.minibatch_prompts})")
        minibatches = sampling.prompts_per_iteration // training.minibatch_prompts
        if minibatches % training.gradient_accumulation_steps:
            steps = training.gradient_accumulation_steps
            raise ConfigError(f"gradient_accumulation_steps ({steps}) "
                              f"must divide the number of minibatches per epoch ({minibatches} = "
                              "prompts_per_iteration / minibatch_prompts)")
        self._check_algorithm()
        return self

    def _check_algorithm(self) -> None:
        """What the chosen algorithm's registry entry says it needs and supports."""
        spec, data, reward = algorithm_spec(self.training.algorithm), self.data, self.reward
        n = self.sampling.num_generations
        if n < spec.min_generations:
            raise ConfigError(f"num_generations must be >= {spec.min_generations} for {spec.name} "
                              "(it compares samples "
                              "of a prompt)")
        needs = {"pair_source": (data.pair_source, lambda s: data.pair_source in s.pair_sources),
                 "pairing": (data.pairing, lambda s: data.pairing in s.pairings),
                 "preference": (reward.preference,
                                lambda s: reward.preference is None or s.preferences)}
        for name, (value, supports) in needs.items():
            if not supports(spec):
                raise ConfigError(f"{name} {value!r} needs algorithm {_supporting(supports)}, got "
                                  f"{spec.name!r}")
        if reward.reward_normalization != "none" and spec.reward_normalization:
            raise ConfigError(spec.reward_normalization.format(value=reward.reward_normalization))
        if data.pairing == "best_worst" and reward.preference is not None:
            raise ConfigError("pairing best_worst ranks samples by reward: use pairing all with a "
                              "preference")
        columns = data.written_columns()
        if data.pair_source == "hybrid" and len(columns) >= n:
            raise ConfigError(f"pair_source hybrid samples num_generations - {len(columns)} "
                              f"completion(s) per prompt: num_generations ({n}) must exceed the "
                              f"{len(columns)} completion_columns")
        if data.pair_source == "offline" and len(columns) != n:
            raise ConfigError(f"pair_source offline takes all num_generations ({n}) completions "
                              "from "
                              f"completion_columns, which has {len(columns)}: make them equal")


def _supporting(supports) -> str:
    """The registered algorithms for which `supports(spec)` holds, for an error message."""
    names = [name for name in algorithm_names() if supports(algorithm_spec(name))]
    return " or ".join(names) or "none"
