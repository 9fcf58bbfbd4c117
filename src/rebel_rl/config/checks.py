"""Value checks and conversion shared by every config group: `check_*` raise one `ConfigError`
line naming the option and the bad value; `convert` turns a YAML or command-line value into the
field's declared type."""
from __future__ import annotations

import types
import typing
from typing import Any

from ..errors import ConfigError


def check_choice(name: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def check_at_least_one(group: Any, names: list[str]) -> None:
    for name in names:
        if getattr(group, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(group, name)}")


def check_positive(group: Any, names: list[str]) -> None:
    for name in names:
        if getattr(group, name) is None or not getattr(group, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(group, name)}")


def check_non_negative(group: Any, names: list[str]) -> None:
    for name in names:
        if getattr(group, name) < 0:
            raise ConfigError(f"{name} must be >= 0, got {getattr(group, name)}")


def check_unit_interval(group: Any, names: list[str]) -> None:
    for name in names:
        if not 0 <= getattr(group, name) <= 1:
            raise ConfigError(f"{name} must be in [0, 1], got {getattr(group, name)}")


# --- value conversion
# ------------------------------------------------------------------------------------
def convert(name: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return convert(name, value, inner[0], source)
    try:
        if origin is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            # `--rewards none`: an empty list
            if [str(item).lower() for item in value] in (["none"], ["[]"]):
                return []
            return [convert(name, item, args[0], source) for item in _split_commas(value)]
        if hint is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} in {source} must be {kind}, got {value!r}") from None
    return value


def _split_commas(items: list | tuple) -> list:
    """`a,b` and `a b` mean the same list, on the command line and in YAML."""
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.extend(part.strip() for part in item.split(","))
        else:
            parts.append(item)
    return parts
