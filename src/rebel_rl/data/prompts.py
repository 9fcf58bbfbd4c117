"""Prompt datasets: load from a built-in set, a local file, a save_to_disk folder or the hub;
validate prompts.

A prompt is either a non-empty string (TRL "standard" format) or a non-empty list of
`{"role": ..., "content": ...}` messages (TRL "conversational" format). Columns other than the
prompt are kept: they are passed to reward functions as keyword arguments.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import datasets

from rebel_rl.hub import check_hub_id
from rebel_rl.errors import DataError, ModelError
from rebel_rl.data.builtin import load_builtin_prompts

# File suffix -> datasets builder name.
FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}
HUB_HINT = "give a local .jsonl/.csv/.parquet file, a save_to_disk folder, or builtin:NAME"


def load_prompt_dataset(
    source: "str | datasets.Dataset | datasets.DatasetDict",
    split: str = "train",
    prompt_column: str = "prompt",
) -> datasets.Dataset:
    """Load and validate a prompt dataset, returning it with the prompts in a column named "prompt".

    `source` is `builtin:NAME`, a .jsonl/.json/.csv/.parquet file, a folder written by
    `save_to_disk` (Dataset or DatasetDict), a hub dataset id, or a `datasets.Dataset`/`DatasetDict`
    object already in memory. A single file or Dataset holds one split and is returned whatever
    `split` is asked for; for the other forms `split` picks the split. `prompt_column` is renamed to
    "prompt". Every prompt must be a non-empty string or a non-empty list of role/content messages,
    all in the same format. Raises DataError on any problem.
    """
    import datasets  # on first use: `rebel --help` and config errors must not wait for it

    if isinstance(source, (datasets.Dataset, datasets.DatasetDict)):
        dataset, source = (
            _pick_split(source, split, "the dataset object"),
            f"{type(source).__name__} object",
        )
    elif isinstance(source, str):
        dataset = _load_raw(source, split)
    else:
        raise DataError(
            f"dataset is a {type(source).__name__}: give a path, a hub id, builtin:NAME, "
            "or a datasets.Dataset/DatasetDict"
        )
    dataset = _select_prompt_column(dataset, source, prompt_column)
    _validate_prompts(dataset, source)
    return dataset


def is_conversational(prompt: Any) -> bool:
    """True if `prompt` is a non-empty list of dicts that each have "role" and "content" keys."""
    return (
        isinstance(prompt, list)
        and len(prompt) > 0
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    )


def clean_messages(messages: list[dict]) -> list[dict]:
    """Drop None-valued keys that Arrow adds when rows have different message keys (e.g. "name")."""
    return [{k: v for k, v in m.items() if v is not None} for m in messages]


def prompt_to_text(prompt: str | list[dict], tokenizer: Any) -> str:
    """Return the text a causal LM should continue: a string prompt unchanged, or a conversational
    prompt rendered with the tokenizer's chat template and the assistant generation prompt appended.

    Raises ModelError if a conversational prompt meets a tokenizer without a chat template, and
    DataError if the prompt is in neither format.
    """
    if isinstance(prompt, str):
        return prompt
    if not is_conversational(prompt):
        raise DataError(
            f"prompt must be a string or a list of role/content messages, got {prompt!r:.80}"
        )
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            "the tokenizer has no chat template but the prompts are conversational: "
            "use a chat/instruct model or plain-string prompts"
        )
    return tokenizer.apply_chat_template(
        clean_messages(prompt), add_generation_prompt=True, tokenize=False
    )


def _looks_like_path(source: str) -> bool:
    """Whether a missing `source` was meant as a local path rather than a hub id like 'org/name'."""
    return (
        Path(source).suffix.lower() in FILE_BUILDERS
        or source.startswith((".", "/", "~"))
        or source.count("/") > 1  # hub ids have exactly one slash
        or "\\" in source
    )


def check_dataset_source(source: str) -> None:
    """The cheap check, before any library loads: a source meant as a local path must exist."""
    if (
        not source.startswith("builtin:")
        and not Path(source).expanduser().exists()
        and _looks_like_path(source)
    ):
        raise DataError(f"dataset file not found: {source} (check the path)")


def _load_raw(source: str, split: str) -> datasets.Dataset:
    """Dispatch on the form of `source` and return one split as a Dataset (no validation yet)."""
    if source.startswith("builtin:"):
        return load_builtin_prompts(source.removeprefix("builtin:"), split)
    path = Path(source).expanduser()
    if path.is_dir():
        return _load_from_disk(path, split)
    if path.is_file():
        return _load_file(path)
    check_dataset_source(source)
    return _load_hub(source, split)


def _load_file(path: Path) -> datasets.Dataset:
    """Load one local data file with the matching datasets builder; its rows form a single split."""
    builder = FILE_BUILDERS.get(path.suffix.lower())
    if builder is None:
        raise DataError(
            f"unsupported dataset file type '{path.suffix}' for {path}: use .jsonl, .json, .csv or "
            f".parquet"
        )
    check_data_file(path)
    try:
        import datasets

        return datasets.load_dataset(builder, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parser errors; report the innermost one
        reason = _short_reason(exc)
        if "corresponds to no data" in reason:  # how datasets reports a file without rows
            raise DataError(
                f"dataset file {path.name} has no rows: give at least one prompt"
            ) from None
        raise DataError(f"cannot read dataset file {path.name}: {reason}") from None


def check_data_file(path: Path) -> None:
    """DataError, naming the file (and for JSON Lines the line), for an empty file or a line that is
    not a JSON object: found here in one pass, before datasets reports it in its own words."""
    if path.stat().st_size == 0:
        raise DataError(f"dataset file {path.name} has no rows: give at least one prompt")
    if path.suffix.lower() != ".jsonl":
        return
    rows = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line.strip())
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"dataset file {path.name} line {number} is not valid JSON ({exc.msg}, column "
                    f"{exc.colno}): fix or remove that line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"dataset file {path.name} line {number} is not a JSON object: write one "
                    '{"prompt": ...} object per line'
                )
            rows += 1
    if not rows:
        raise DataError(f"dataset file {path.name} has no rows: give at least one prompt")


def _load_from_disk(path: Path, split: str) -> datasets.Dataset:
    """Load a folder written by `save_to_disk`; from a DatasetDict pick `split`."""
    try:
        import datasets

        loaded = datasets.load_from_disk(str(path))
    except Exception as exc:
        raise DataError(
            f"cannot load dataset folder {path} ({_short_reason(exc)}): give a folder written by "
            "Dataset.save_to_disk, or a data file"
        ) from None
    return _pick_split(loaded, split, f"dataset folder {path}")


def _pick_split(
    loaded: "datasets.Dataset | datasets.DatasetDict", split: str, name: str
) -> datasets.Dataset:
    """`split` of a DatasetDict (DataError naming the available ones); a Dataset as it is."""
    import datasets

    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(
                f"{name} has no split '{split}': available splits are {', '.join(loaded)}"
            )
        return loaded[split]
    return loaded


def _load_hub(source: str, split: str) -> datasets.Dataset:
    """Load `split` of hub dataset `source`; any failure (offline, not found, bad split) is a
    DataError."""
    check_hub_id(source, "dataset", DataError, HUB_HINT)  # at once when the hub cannot be reached
    try:
        import datasets

        return datasets.load_dataset(source, split=split)
    except Exception as exc:
        raise DataError(
            f"cannot load dataset '{source}' ({_short_reason(exc)}): {HUB_HINT}"
        ) from None


def _short_reason(exc: BaseException) -> str:
    """One line describing the root cause of `exc`, following the `raise ... from` chain."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__


def _select_prompt_column(dataset: datasets.Dataset, source: str, column: str) -> datasets.Dataset:
    """Check that `column` exists and rename it to "prompt" when needed."""
    columns = dataset.column_names
    if column not in columns:
        raise DataError(
            f"dataset '{source}' has no column '{column}' (columns: {', '.join(columns)}): "
            "pass the right one with --prompt_column"
        )
    if column == "prompt":
        return dataset
    if "prompt" in columns:
        raise DataError(
            f"dataset '{source}' has both 'prompt' and '{column}' columns, so --prompt_column "
            f"{column} "
            "is ambiguous: rename or drop one of them"
        )
    return dataset.rename_column(column, "prompt")


def _validate_prompts(dataset: datasets.Dataset, source: str) -> None:
    """Raise DataError for an empty dataset, a malformed prompt row or a mix of the two formats."""
    if len(dataset) == 0:
        raise DataError(f"dataset '{source}' has no rows: give a dataset with at least one prompt")
    first_format = None
    for index, prompt in enumerate(dataset["prompt"]):
        row_format = _prompt_format(prompt)
        if row_format is None:
            raise DataError(
                f"dataset '{source}' row {index}: prompt must be a non-empty string or a non-empty "
                f"list of {{'role', 'content'}} messages, got {prompt!r:.80}"
            )
        first_format = first_format or row_format
        if row_format != first_format:
            raise DataError(
                f"dataset '{source}' row {index} is a {row_format} prompt but earlier rows are "
                f"{first_format}: use one prompt format for the whole dataset"
            )


def _prompt_format(prompt: Any) -> str | None:
    """Return "standard", "conversational", or None if `prompt` is in neither valid format."""
    if isinstance(prompt, str):
        return "standard" if prompt.strip() else None
    if is_conversational(prompt) and all(
        isinstance(m["role"], str) and isinstance(m["content"], str) for m in prompt
    ):
        return "conversational"
    return None
