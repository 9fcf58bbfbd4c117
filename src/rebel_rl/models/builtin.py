"""Built-in models by name (`builtin:NAME`) that a task provides: today the `digits` task's
denoiser.

The built-in tasks (tasks/) register them here when `rebel_rl` is imported; a builder may be given
as a "module:function" reference, imported on first use (registry.py), so registering one stays
light. (`builtin:smollm2-135m-instruct`, a plain hub model, is pretrained.py's.)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelError
from ..registry import Registry, resolve


@dataclass(frozen=True)
class BuiltinModel:
    """A builder `build(**options) -> policy` (or a reference to it) and the modules LoRA adapts by
    default."""

    builder: Callable[..., Any] | str
    lora_targets: tuple[str, ...]
    kind: str = "causal_lm"
    # `recognizes(folder) -> bool` (or a "module:function"): a saved fine-tuned copy of this model
    recognizes: Callable[[Path], bool] | str | None = None

    def holds_saved_copy(self, folder: Path) -> bool:
        """Whether `folder` holds a saved (e.g. fine-tuned) copy of this model, by its task's
        test."""
        return self.recognizes is not None and bool(resolve(self.recognizes)(folder))

    def build(self, **options: Any) -> Any:
        """The policy, built by the registered builder with `options` (sampler, LoRA, device,
        ...)."""
        return resolve(self.builder)(**options)


BUILTIN_MODELS: Registry[BuiltinModel] = Registry("built-in model")


def register_model(
    name: str,
    builder: Callable[..., Any] | str,
    *,
    lora_targets: tuple[str, ...],
    kind: str = "causal_lm",
    recognizes: Callable[[Path], bool] | str | None = None,
) -> None:
    """Make `builtin:NAME` a model of `kind` built by `builder(**options)` (or the
    "module:function" it names); `recognizes(folder)` tells a saved copy of it (a fine-tuned
    one)."""
    BUILTIN_MODELS.register(name, BuiltinModel(builder, tuple(lora_targets), kind, recognizes))


def builtin_names(kind: str) -> list[str]:
    """The `builtin:NAME` sources of every registered model of `kind` (e.g. "diffusion")."""
    return [f"builtin:{n}" for n in sorted(BUILTIN_MODELS) if BUILTIN_MODELS[n].kind == kind]


def builtin_of_folder(folder: Path, kind: str) -> BuiltinModel | None:
    """The registered model of `kind` whose task recognises `folder` as a saved copy, else None."""
    for name in sorted(BUILTIN_MODELS):
        entry = BUILTIN_MODELS[name]
        if entry.kind == kind and folder.is_dir() and entry.holds_saved_copy(folder):
            return entry
    return None


def builtin_model(source: str) -> BuiltinModel:
    """The registered model `source` (`builtin:NAME`) names; ModelError listing the known ones
    otherwise."""
    name = source.removeprefix("builtin:")
    if not source.startswith("builtin:") or name not in BUILTIN_MODELS:
        known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_MODELS))
        raise ModelError(f"unknown built-in model {source!r}: use one of {known}")
    return BUILTIN_MODELS[name]


__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "builtin_model",
    "builtin_names",
    "builtin_of_folder",
    "register_model",
]
