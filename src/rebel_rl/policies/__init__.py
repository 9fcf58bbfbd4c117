"""Trainable policies behind one interface: sample with log-probs; recompute log-probs."""
__all__ = ["Rollout"]


def __getattr__(name: str):
    # Lazy, so the light helpers here (factory.is_diffusion, pretrained) import without torch.
    if name == "Rollout":
        from .base import Rollout

        return Rollout
    raise AttributeError(name)
