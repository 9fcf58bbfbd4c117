"""rebel-rl: REBEL (REgression to RElative REward Based RL) for Hugging Face models."""
from .config import RebelConfig
from .training.online import registry as _algorithm_registry  # noqa: F401 (registers the online algorithms; no torch)
from .errors import ConfigError, DataError, HubError, ModelError, RebelError, RewardError, RunDirError
# The built-in tasks register their prompt sets, rewards and models into the registries of data/, rewards/ and
# policies/ (light: no torch or datasets); importing them here registers them before any lookup.
from . import tasks  # noqa: F401
from .compare.config import CompareConfig
from .evaluation.model_eval import EvaluateConfig
from .stage_configs import DPOConfig, PreferenceModelConfig, RewardModelConfig, SFTConfig

__all__ = ["RebelConfig", "RebelError", "ConfigError", "DataError", "ModelError",
           "RewardError", "RunDirError", "HubError", "push", "train", "RebelTrainer", "SFTConfig", "RewardModelConfig", "DPOConfig",
           "sft", "train_reward_model", "dpo", "PreferenceModelConfig", "train_preference_model", "EvaluateConfig", "evaluate_model", "CompareConfig",
           "rebel_loss", "rebel_preference_loss", "ppo_policy_loss", "ppo_value_loss", "gae", "rloo_advantages", "policy_gradient_loss", "dpo_loss",
           "grpo_loss", "grpo_advantages", "apo_loss", "optimal_value"]
__version__ = "0.1.0"
# The offline stages (docs/pipeline.md), imported on first use like the trainer.
_STAGE_MODULES = {"sft": ".training.offline.sft", "train_reward_model": ".training.offline.reward_model",
                  "dpo": ".training.offline.offline_dpo",
                  "train_preference_model": ".training.offline.preference_model",
                  "evaluate_model": ".evaluation.model_eval", "push": ".training.run.hub"}
# The pure losses need torch: imported on first use too, so `import rebel_rl` (and `rebel --help`) stays light.
_ALGORITHM_NAMES = {"apo_loss", "optimal_value", "dpo_loss", "gae", "grpo_advantages", "grpo_loss",
                    "policy_gradient_loss", "ppo_policy_loss", "ppo_value_loss", "rebel_loss",
                    "rebel_preference_loss", "rloo_advantages"}
# `rebel_rl.compare` is the comparison subpackage: `from rebel_rl.compare import compare, CompareConfig`.


def __getattr__(name: str):
    # torch, transformers, datasets and diffusers load only when a trainer, stage or loss is first used.
    if name in ("train", "RebelTrainer"):
        from .training.online import loop

        return getattr(loop, name)
    if name in _ALGORITHM_NAMES:
        from . import algorithms

        return getattr(algorithms, name)
    if name in _STAGE_MODULES:
        import importlib

        return getattr(importlib.import_module(_STAGE_MODULES[name], __name__), name)
    raise AttributeError(name)
