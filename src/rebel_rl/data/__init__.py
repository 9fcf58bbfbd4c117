"""Prompt datasets and prompt formatting."""
from __future__ import annotations

from typing import Any

__all__ = ["is_conversational", "load_prompt_dataset", "prompt_to_text"]


def __getattr__(name: str) -> Any:
    # prompts.py imports `datasets`; load it on first use so the registry (builtin.py) stays light.
    if name in __all__:
        from . import prompts

        return getattr(prompts, name)
    raise AttributeError(name)
