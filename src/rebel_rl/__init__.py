"""rebel-rl: REBEL (REgression to RElative REward Based RL) for Hugging Face models."""
from .algorithms import rebel_loss
from .config import RebelConfig
from .errors import ConfigError, DataError, ModelError, RebelError, RewardError, RunDirError
from .stage_configs import DPOConfig, RewardModelConfig, SFTConfig

__all__ = ["rebel_loss", "RebelConfig", "RebelError", "ConfigError", "DataError", "ModelError",
           "RewardError", "RunDirError", "train", "RebelTrainer", "SFTConfig", "RewardModelConfig", "DPOConfig",
           "sft", "train_reward_model", "dpo"]
__version__ = "0.1.0"
# The offline stages (docs/pipeline.md), imported on first use like the trainer.
_STAGE_MODULES = {"sft": ".training.sft", "train_reward_model": ".training.reward_model", "dpo": ".training.offline_dpo"}


def __getattr__(name: str):
    # The trainer pulls in transformers; import it lazily so `import rebel_rl` stays fast.
    if name in ("train", "RebelTrainer"):
        from .training import loop

        return getattr(loop, name)
    if name in _STAGE_MODULES:
        import importlib

        return getattr(importlib.import_module(_STAGE_MODULES[name], __name__), name)
    raise AttributeError(name)
