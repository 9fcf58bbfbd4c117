"""Trainable policies behind one interface: sample with log-probs; recompute log-probs."""
from .base import Rollout

__all__ = ["Rollout"]
