"""Built-in prompt sets, reachable as `builtin:NAME` wherever a dataset source is accepted.

The built-in tasks (tasks/) register them here when `rebel_rl` is imported; a loader may be given as
a "module:function" reference, imported on first use (registry.py).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import DataError
from ..registry import Registry, resolve

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class BuiltinPrompts:
    """One prompt set: its loader `loader(split) -> datasets.Dataset` (or a reference to it) and its
    splits."""

    loader: Callable[[str], datasets.Dataset] | str
    splits: tuple[str, ...]


BUILTIN_PROMPTS: Registry[BuiltinPrompts] = Registry("built-in dataset")


def register_prompts(
    name: str, loader: Callable[[str], datasets.Dataset] | str, splits: tuple[str, ...]
) -> None:
    """Make `builtin:NAME` load `loader(split)` for each split in `splits` (the loader may be a
    reference)."""
    BUILTIN_PROMPTS.register(name, BuiltinPrompts(loader, tuple(splits)))


def load_builtin_prompts(name: str, split: str = "train") -> datasets.Dataset:
    """Return split `split` of built-in prompt set `name`; DataError for an unknown name or
    split."""
    if name not in BUILTIN_PROMPTS:
        known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_PROMPTS))
        raise DataError(f"unknown built-in dataset 'builtin:{name}': use one of {known}")
    entry = BUILTIN_PROMPTS[name]
    if split not in entry.splits:
        raise DataError(
            f"built-in dataset 'builtin:{name}' has no split '{split}': use one of "
            f"{', '.join(entry.splits)}"
        )
    return resolve(entry.loader)(split)


__all__ = ["BUILTIN_PROMPTS", "BuiltinPrompts", "load_builtin_prompts", "register_prompts"]
