"""What a run was given as Python objects instead of config paths, recorded in `inputs.json`.

A model, tokenizer, dataset or reward model passed to `train(...)` is not in config.yaml; this file
keeps the run described: each object's class, a hash of a model's config (and its adapter's), a
dataset's fingerprint, rows and columns, and a reward function's name.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

INPUTS_FILE = "inputs.json"


def describe_object(value: Any) -> dict[str, Any]:
    """A JSON description of one object passed in (model, tokenizer, dataset, reward function)."""
    described: dict[str, Any] = {"class": f"{type(value).__module__}.{type(value).__qualname__}"}
    config = getattr(value, "config", None)
    if hasattr(config, "to_json_string"):
        described["config_sha256"] = _sha256(config.to_json_string(use_diff=False))
        described["name_or_path"] = getattr(config, "name_or_path", "") or None
    adapters = getattr(value, "peft_config", None)
    if isinstance(adapters, dict):  # a PeftModel: its adapter settings
        described["adapter_sha256"] = _sha256(
            json.dumps({k: v.to_dict() for k, v in adapters.items()}, sort_keys=True, default=str)
        )
    if hasattr(value, "_fingerprint"):  # a datasets.Dataset
        described.update(
            fingerprint=value._fingerprint, num_rows=value.num_rows, columns=value.column_names
        )
    elif hasattr(value, "num_rows") and isinstance(value.num_rows, dict):  # a DatasetDict
        described["splits"] = {name: describe_object(split) for name, split in value.items()}
    if hasattr(value, "name_or_path") and "name_or_path" not in described:  # a tokenizer
        described["name_or_path"] = value.name_or_path or None
        described["chat_template_sha256"] = (
            _sha256(value.chat_template) if getattr(value, "chat_template", None) else None
        )
    if callable(value) and not hasattr(value, "parameters"):
        described["name"] = getattr(value, "__name__", type(value).__name__)
    return described


def write_inputs(run_dir: Path, objects: dict[str, Any]) -> None:
    """Write `inputs.json` describing the objects given (None values are skipped); nothing when none
    were."""
    given = {name: value for name, value in objects.items() if value is not None}
    if not given:
        return
    described = {
        name: (
            [describe_object(v) for v in value]
            if isinstance(value, (list, tuple))
            else describe_object(value)
        )
        for name, value in given.items()
    }
    (run_dir / INPUTS_FILE).write_text(json.dumps(described, indent=2))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
