"""The `digits` prompt sets (`builtin:digits`) and the one digit a prompt names."""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

from rebel_rl.errors import DataError

if TYPE_CHECKING:  # `datasets` is imported by the loader: registering the task stays light
    import datasets

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TRAIN_TEMPLATES = (
    "a handwritten digit {d}",
    "the number {d}, written by hand",
    "a handwritten {w}",
    "a scanned digit {d}",
)
TEST_TEMPLATES = (
    "the digit {w}, handwritten",
    "a hand-drawn {d}",
)
SPLITS = {"train": TRAIN_TEMPLATES, "test": TEST_TEMPLATES}


def load_digit_prompts(split: str = "train") -> datasets.Dataset:
    """The `split` ("train" or "test") of digit prompts: columns `prompt` (str) and `digit` (int).

    Every template of the split is applied to every digit, digit-major; DataError for an unknown
    split.
    """
    if split not in SPLITS:
        raise DataError(f"the digits task has no split '{split}': use one of {', '.join(SPLITS)}")
    import datasets

    prompts, digits = [], []
    for digit in range(10):
        for template in SPLITS[split]:
            prompts.append(template.format(d=digit, w=DIGIT_WORDS[digit]))
            digits.append(digit)
    return datasets.Dataset.from_dict({"prompt": prompts, "digit": digits})


def digit_of_prompt(prompt: str | list) -> int:
    """The one digit a prompt names, as a numeral or an English word; DataError for none or several.

    A conversational prompt (a list of messages) is read from its last message.
    """
    text = prompt[-1]["content"] if isinstance(prompt, list) and prompt else prompt
    if not isinstance(text, str):
        raise DataError(f"a digits prompt must be text, got {type(text).__name__}")
    found = {int(c) for c in re.findall(r"\d", text)}
    found |= {
        i for i, word in enumerate(DIGIT_WORDS) if re.search(rf"\b{word}\b", text, re.IGNORECASE)
    }
    if len(found) != 1:
        named = (
            "no digit" if not found else f"several digits ({', '.join(map(str, sorted(found)))})"
        )
        raise DataError(
            f"the prompt {text!r} names {named}: name exactly one, e.g. 'a handwritten digit 7'"
        )
    return found.pop()
