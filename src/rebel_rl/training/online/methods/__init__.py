"""The online algorithms, one module each: its option dataclass, its Objective (how a batch
becomes a loss, calling the pure function of algorithms/) and its one registry entry.

Importing this package imports every module in it, so every algorithm is registered
(config/algorithms.py) and no list of names is kept anywhere else; no module imports torch when
imported (`rebel train --help` and config validation come here). base.py holds what they share.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys

from .base import Batch, BuildContext, Objective, build_objective, ratio_stats

# The order of every list of algorithms (--help, compare's rows, the README table): these modules
# first, in the order they have always been listed, then any other module here alphabetically;
# a new algorithm is joined by its module alone.
FIRST = ("rebel", "ppo", "rloo", "reinforce", "iterative_dpo", "ddpo", "grpo", "apo")


def discover() -> list[str]:
    """Import every module of this package not imported yet (each registers its algorithm), in
    the order above; returns the names it imported. A module that imports another algorithm's
    module would register that one first, so none does."""
    found = {m.name for m in pkgutil.iter_modules(__path__)} - {"base"}
    order = [name for name in FIRST if name in found] + sorted(found - set(FIRST))
    new = [name for name in order if f"{__name__}.{name}" not in sys.modules]
    for name in new:
        importlib.import_module(f"{__name__}.{name}")
    return new


discover()

__all__ = ["Batch", "BuildContext", "Objective", "build_objective", "discover", "ratio_stats"]
