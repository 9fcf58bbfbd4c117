"""Trainable policies behind one interface: sample with log-probs; recompute log-probs."""
from __future__ import annotations

from typing import Any

__all__ = ["Rollout"]


def __getattr__(name: str) -> Any:
    # base.py imports torch; load it on first use so importing the package stays light.
    if name == "Rollout":
        from .base import Rollout

        return Rollout
    raise AttributeError(name)
