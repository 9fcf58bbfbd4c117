"""Datasets of prompts with written completions (TRL formats) for the offline stages.

"prompt-completion" rows (SFT) have `prompt` and `completion`; "preference" rows (reward model, DPO)
have `prompt`, `chosen` and `rejected`. A prompt is a string or a list of role/content messages
(checked by `load_prompt_dataset`); a completion is a string or a list of messages (its contents are
the text). Other columns are kept (`judge_prefers_chosen` for example).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets

from ..errors import DataError
from .prompts import is_conversational, load_prompt_dataset

COMPLETION_COLUMNS = ("completion",)
PREFERENCE_COLUMNS = ("chosen", "rejected")


def load_pair_dataset(source: str, split: str, columns: tuple[str, ...]) -> datasets.Dataset:
    """Load `split` of `source` (any form `load_prompt_dataset` takes) and check that every row has
    a valid prompt and, in each of `columns`, a string or a list of messages; DataError
    otherwise."""
    dataset = load_prompt_dataset(source, split)
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"dataset '{source}' has no column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(map(repr, missing))} "
            f"(columns: {', '.join(dataset.column_names)}): this stage needs "
            f"{', '.join(('prompt',) + columns)}"
        )
    for column in columns:
        for index, value in enumerate(dataset[column]):
            if not _is_completion(value):
                raise DataError(
                    f"dataset '{source}' row {index}: {column} must be a string or a list of "
                    f"{{'role', 'content'}} messages, got {value!r:.80}"
                )
    return dataset


def load_train_eval(data: Any, seed: int, columns: tuple[str, ...]
                    ) -> tuple[datasets.Dataset, datasets.Dataset | None]:
    """The training rows and the held-out rows (None: no evaluation) that a stage's data group
    names (its dataset, dataset_split, eval_dataset, eval_split and eval_fraction).

    Held-out rows come from `eval_dataset` (default `dataset`) split `eval_split`. A single data
    file has no splits, so when `dataset` is one and `eval_dataset` is unset, a seeded
    `eval_fraction` of its rows is held out instead (0 = no evaluation). `eval_split=None` turns
    evaluation off.
    """
    source, split, eval_source = data.dataset, data.dataset_split, data.eval_dataset
    eval_split, eval_fraction = data.eval_split, data.eval_fraction
    train = load_pair_dataset(source, split, columns)
    if eval_split is None:
        return train, None
    if eval_source is None and Path(source).expanduser().is_file():
        if eval_fraction == 0:
            return train, None
        if len(train) < 2:
            raise DataError(
                f"dataset '{source}' has {len(train)} row: hold-out evaluation needs at least 2 "
                "(or pass --eval_fraction 0)"
            )
        held_out = max(1, round(eval_fraction * len(train)))
        parts = train.train_test_split(test_size=held_out, seed=seed)
        return parts["train"], parts["test"]
    return train, load_pair_dataset(eval_source or source, eval_split, columns)


def judge_labels(dataset: datasets.Dataset) -> list[bool] | None:
    """The noise-free `judge_prefers_chosen` labels of a preference dataset, if it has them."""
    if "judge_prefers_chosen" not in dataset.column_names:
        return None
    labels = dataset["judge_prefers_chosen"]
    if not all(isinstance(v, bool) for v in labels):
        raise DataError("column judge_prefers_chosen must hold true/false values")
    return list(labels)


def _is_completion(value: Any) -> bool:
    return isinstance(value, str) or is_conversational(value)
