"""Built-in models by name (`builtin:NAME`) that a task provides: today the `digits` task's
denoiser.

The built-in tasks (tasks/) register them here when `rebel_rl` is imported; a builder may be given
as a "module:function" reference, imported on first use (registry.py), so registering one stays
light. (`builtin:smollm2-135m-instruct`, a plain hub model, is pretrained.py's.)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import ModelError
from ..registry import Registry, resolve


@dataclass(frozen=True)
class BuiltinModel:
    """A builder `build(**options) -> policy` (or a reference to it) and the modules LoRA adapts by
    default."""

    builder: Callable[..., Any] | str
    lora_targets: tuple[str, ...]

    def build(self, **options: Any) -> Any:
        """The policy, built by the registered builder with `options` (sampler, LoRA, device,
        ...)."""
        return resolve(self.builder)(**options)


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")


def register_model(
    name: str, builder: Callable[..., Any] | str, *, lora_targets: tuple[str, ...]
) -> None:
    """Make `builtin:NAME` a model built by `builder(**options)` (or the "module:function" it
    names)."""
    BUILTIN_MODELS.register(name, BuiltinModel(builder, tuple(lora_targets)))


def builtin_model(source: str) -> BuiltinModel:
    """The registered model `source` (`builtin:NAME`) names; ModelError listing the known ones
    otherwise."""
    name = source.removeprefix("builtin:")
    if not source.startswith("builtin:") or name not in BUILTIN_MODELS:
        known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_MODELS))
        raise ModelError(f"unknown built-in model {source!r}: use one of {known}")
    return BUILTIN_MODELS[name]


__all__ = ["BUILTIN_MODELS", "BuiltinModel", "builtin_model", "register_model"]
