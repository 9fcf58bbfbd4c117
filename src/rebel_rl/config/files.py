"""The files shipped in rebel_rl/configs/ (YAML recipes, accelerate configs) and the one YAML
reader every config uses: each I/O or syntax problem becomes one `ConfigError` line."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

CONFIG_FOLDER = Path(__file__).resolve().parents[1] / "configs"


def packaged_config(name: str) -> Path:
    """The YAML recipe `name` shipped in rebel_rl/configs/ (`images_digits`, `lcm_aesthetic`,
    ...)."""
    path = CONFIG_FOLDER / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(f"builtin:{p.stem}" for p in sorted(CONFIG_FOLDER.glob("*.yaml")))
        raise ConfigError(f"no packaged config {name!r}: use one of {known}")
    return path


def packaged_recipes() -> dict[str, str]:
    """Every packaged recipe, `builtin:NAME` -> the first line of its header comment."""
    recipes = {}
    for path in sorted(CONFIG_FOLDER.glob("*.yaml")):
        first = next((line for line in path.read_text().splitlines() if line.startswith("#")), "#")
        recipes[f"builtin:{path.stem}"] = first.lstrip("# ").split(":")[0].rstrip()
    return recipes


def packaged_accelerate_config(name: str) -> Path:
    """The accelerate config `name` shipped in rebel_rl/configs/accelerate/ (`fsdp2`,
    `deepspeed_zero2`)."""
    folder = CONFIG_FOLDER / "accelerate"
    matches = sorted(folder.glob(f"{name}*.yaml"))
    if not matches:
        known = ", ".join(p.stem for p in sorted(folder.glob("*.yaml")))
        raise ConfigError(f"no packaged accelerate config {name!r}: use one of {known}")
    return matches[0]


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (`builtin:NAME` is a packaged recipe), turning every I/O or syntax
    problem into one ConfigError line."""
    path = (
        packaged_config(str(path).removeprefix("builtin:"))
        if str(path).startswith("builtin:")
        else Path(path)
    )
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(
            f"config file {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"config file {path} must be a mapping of `field: value` lines, got "
            f"{type(data).__name__}"
        )
    return data
