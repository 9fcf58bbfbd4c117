"""rebel-rl: REBEL (REgression to RElative REward Based RL) for Hugging Face models."""
from .algorithms import rebel_loss
from .config import RebelConfig
from .errors import ConfigError, DataError, ModelError, RebelError, RewardError, RunDirError

__all__ = ["rebel_loss", "RebelConfig", "RebelError", "ConfigError", "DataError", "ModelError",
           "RewardError", "RunDirError", "train", "RebelTrainer"]
__version__ = "0.1.0"


def __getattr__(name: str):
    # The trainer pulls in transformers; import it lazily so `import rebel_rl` stays fast.
    if name in ("train", "RebelTrainer"):
        from .training import loop

        return getattr(loop, name)
    raise AttributeError(name)
