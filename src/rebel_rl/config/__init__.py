"""Configs: the shared machinery (base.py, with its value checks in checks.py and the packaged files
in files.py), the online run's `RebelConfig` (run.py) and its groups (policy.py: model, sampling;
episodes.py: data, reward, environment; loop.py: training, evaluation, output), and the algorithm
registry (algorithms.py) that the modules of training/online/methods/ fill."""
from .algorithms import AlgorithmSpec, algorithm_names, algorithm_spec, register_algorithm
from .base import (
    ConfigBase,
    GroupedConfig,
    check_choice,
    convert,
    option,
    packaged_accelerate_config,
    packaged_config,
    packaged_recipes,
    read_yaml,
)
from .base import config_fields as _config_fields
from .run import (
    DEFAULT_DATASET,
    DEFAULT_MODEL,
    DataConfig,
    EvalConfig,
    ModelConfig,
    OutputConfig,
    RebelConfig,
    RewardConfig,
    SamplingConfig,
    TrainingConfig,
)

__all__ = [
    "AlgorithmSpec",
    "ConfigBase",
    "DataConfig",
    "DEFAULT_DATASET",
    "DEFAULT_MODEL",
    "EvalConfig",
    "GroupedConfig",
    "ModelConfig",
    "OutputConfig",
    "RebelConfig",
    "RewardConfig",
    "SamplingConfig",
    "TrainingConfig",
    "algorithm_names",
    "algorithm_spec",
    "check_choice",
    "config_fields",
    "convert",
    "option",
    "packaged_config",
    "packaged_accelerate_config",
    "packaged_recipes",
    "read_yaml",
    "register_algorithm",
]
_check_choice = check_choice  # the name compare/config.py knew it by


def config_fields(cls: type | None = None) -> list:
    """The option fields of a config class (default RebelConfig), in --help order."""
    return _config_fields(cls or RebelConfig)
