"""Named built-ins that a higher layer registers into a lower one, by reference, resolved on first
use.

data/, rewards/ and models/ own registries (built-in prompt sets, rewards and preferences,
models); the built-in tasks (tasks/, a layer above them) fill them when `rebel_rl` is imported, so
the lower layers never import a task. An entry is registered as the object itself or as a
"module:attribute" reference: registering a reference imports nothing (no torch, diffusers, ...);
the first lookup of the name does.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def resolve(reference: Any) -> Any:
    """The object a "module:attribute" string names (importing the module); any other value as it
    is."""
    if not isinstance(reference, str):
        return reference
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


class Registry(Mapping[str, T]):
    """A read-only mapping name -> entry that `register` fills; a reference entry is resolved on
    lookup."""

    def __init__(self, what: str) -> None:
        self.what = what  # what an entry is, for messages: "built-in reward"
        self._references: dict[str, Any] = {}
        self._resolved: dict[str, T] = {}

    def register(self, name: str, entry: T | str) -> None:
        """Add `entry` (an object or a "module:attribute" string) as `name`. Registering the same
        entry again is a no-op (a reloaded task); another entry under a taken name is a
        ValueError."""
        if name in self._references and self._references[name] != entry:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._references[name] = entry

    def __getitem__(self, name: str) -> T:
        if name not in self._resolved:
            self._resolved[name] = resolve(self._references[name])
        return self._resolved[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._references)

    def __len__(self) -> int:
        return len(self._references)

    def __repr__(self) -> str:
        return f"Registry({self.what}: {', '.join(self._references)})"
