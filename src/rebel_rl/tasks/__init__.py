"""Built-in prompt sets, reachable as `builtin:NAME` wherever a dataset source is accepted."""
from __future__ import annotations

from typing import Callable

import datasets

from rebel_rl.errors import DataError
from rebel_rl.tasks import animals, digits, positive_sentiment, summarization

# name -> (loader(split) -> Dataset, available splits)
BUILTIN_TASKS: dict[str, tuple[Callable[[str], datasets.Dataset], tuple[str, ...]]] = {
    "positive_sentiment": (positive_sentiment.load, tuple(positive_sentiment.SPLITS)),
    # A TL;DR-like summarization task (docs/summarization_task.md): posts with references and judge facts,
    # SFT pairs (prompt, completion), and judge-labelled preference pairs (prompt, chosen, rejected).
    "tldr": (summarization.load_tldr, summarization.SPLITS),
    "tldr_sft": (summarization.load_tldr_sft, summarization.SFT_SPLITS),
    "tldr_preferences": (summarization.load_tldr_preferences, summarization.SPLITS),
    # Images (docs/images.md): prompts naming a digit for builtin:digits-denoiser, and DDPO's animals.
    "digits": (digits.load_digit_prompts, tuple(digits.SPLITS)),
    "animals": (animals.load_animal_prompts, animals.SPLITS),
}


def load_builtin_prompts(name: str, split: str = "train") -> datasets.Dataset:
    """Return split `split` of built-in prompt set `name`; DataError for an unknown name or split."""
    if name not in BUILTIN_TASKS:
        known = ", ".join(f"builtin:{n}" for n in sorted(BUILTIN_TASKS))
        raise DataError(f"unknown built-in dataset 'builtin:{name}': use one of {known}")
    loader, splits = BUILTIN_TASKS[name]
    if split not in splits:
        raise DataError(
            f"built-in dataset 'builtin:{name}' has no split '{split}': use one of {', '.join(splits)}"
        )
    return loader(split)


__all__ = ["BUILTIN_TASKS", "load_builtin_prompts"]
