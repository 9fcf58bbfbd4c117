"""rebel-rl: REBEL (REgression to RElative REward Based RL) for Hugging Face models."""
from .config import RebelConfig
from .training.online import methods as _algorithms  # noqa: F401 (registers the algorithms; no torch)
from .errors import (
    ConfigError,
    DataError,
    HubError,
    ModelError,
    RebelError,
    RewardError,
    RunDirError,
)

# The built-in tasks register their prompt sets, rewards and models into the registries of data/,
# rewards/ and models/ (light: no torch or datasets); importing them here registers them before
# any lookup.
from . import tasks  # noqa: F401
from .compare.config import CompareConfig
from .evaluation.model_eval import EvaluateConfig
from .stage_configs import DPOConfig, PreferenceModelConfig, RewardModelConfig, SFTConfig

# The public names without the pure losses; `__all__` adds those (algorithms.__all__) when asked.
_PUBLIC = ["RebelConfig", "RebelError", "ConfigError", "DataError", "ModelError",
           "RewardError", "RunDirError", "HubError", "push", "train", "RebelTrainer", "SFTConfig",
           "RewardModelConfig", "DPOConfig", "sft", "train_reward_model", "dpo",
           "PreferenceModelConfig", "train_preference_model", "EvaluateConfig", "evaluate_model",
           "CompareConfig"]
__version__ = "0.1.0"
# The offline stages (docs/pipeline.md), imported on first use like the trainer.
_STAGE_MODULES = {
    "sft": ".training.offline.sft",
    "train_reward_model": ".training.offline.reward_model",
    "dpo": ".training.offline.offline_dpo",
    "train_preference_model": ".training.offline.preference_model",
    "evaluate_model": ".evaluation.model_eval",
    "push": ".training.run.hub",
}
# The pure losses (algorithms/, whose __all__ lists them) need torch: imported on first use too, so
# `import rebel_rl` (and `rebel --help`) stays light.
# `rebel_rl.compare` is the comparison subpackage: `from rebel_rl.compare import compare,
# CompareConfig`.


def __getattr__(name: str):
    # torch, transformers, datasets and diffusers load only when a trainer, stage or loss is first
    # used.
    if name in ("train", "RebelTrainer"):
        from .training.online import loop

        return getattr(loop, name)
    import importlib

    if name in _STAGE_MODULES:
        return getattr(importlib.import_module(_STAGE_MODULES[name], __name__), name)
    if name.startswith("_") and name != "__all__" or name == "algorithms":
        raise AttributeError(name)  # probes (__path__, a submodule not imported) stay torch-free
    algorithms = importlib.import_module(".algorithms", __name__)

    if name == "__all__":
        return _PUBLIC + list(algorithms.__all__)
    if name in algorithms.__all__:
        return getattr(algorithms, name)
    raise AttributeError(name)
