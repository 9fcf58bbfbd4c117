"""Config machinery shared by every command: dataclasses filled from YAML, dicts and `--field
value`.

Two shapes use it. A flat config (`CompareConfig`, `EvaluateConfig`) is one dataclass. A grouped
config (`RebelConfig`, the stage configs) is a set of small group dataclasses, one per layer (model,
data, sampling, ...), so that each component receives only its own group. Input may name options
flat (`RebelConfig(eta=0.5)`, `--eta 0.5`, old flat YAML files) or by group (`ppo.clip_range`,
`ppo: {clip_range: ...}`, `RebelConfig(ppo={"clip_range": ...})`); inside src every read is
`config.<group>.<field>`. A name that several algorithm groups share (`clip_range`) given flat
applies to the chosen algorithm's group; any other name that two groups share must be written
`group.name`. Each field's help is its `option(default, "help")` metadata. Every problem is one
`ConfigError` line.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import typing
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from .algorithms import ALGORITHMS_PLACEHOLDER, algorithm_choices

# Moved to checks.py and files.py; re-exported so that `from ...config.base import
# check_positive` (training/online/methods/) and `CONFIG_FOLDER` (tests) keep working.
from .checks import (
    check_at_least_one,
    check_choice,
    check_non_negative,
    check_positive,
    check_unit_interval,
    convert,
)
from .files import (
    CONFIG_FOLDER,
    packaged_accelerate_config,
    packaged_config,
    packaged_recipes,
    read_yaml,
)

__all__ = [
    "CONFIG_FOLDER",
    "ConfigBase",
    "GroupedConfig",
    "check_at_least_one",
    "check_choice",
    "check_non_negative",
    "check_positive",
    "check_unit_interval",
    "config_fields",
    "convert",
    "option",
    "packaged_accelerate_config",
    "packaged_config",
    "packaged_recipes",
    "read_yaml",
]


class ConfigBase:
    """YAML, dict and command-line construction shared by every config (flat dataclasses and
    grouped).

    `command` names the CLI subcommand that takes the config (for error messages).
    """

    command = "train"

    @classmethod
    def option_fields(cls) -> list[tuple[str, dataclasses.Field, type]]:
        """(flat name, field, the dataclass declaring it) for every option, in declaration order."""
        return [(f.name, f, cls) for f in fields(cls)]

    @classmethod
    def flag(cls, name: str, owner: type) -> str:
        """The name option `name` of dataclass `owner` is known by in help and docs."""
        return name

    @classmethod
    def field_help(cls) -> dict[str, str]:
        """Each option's help, by `flag()` (the `help` of its `option(...)`): the one place options
        are documented. `{algorithms}` in a help is the registry's list, so that a new algorithm
        needs no help edit."""
        return {cls.flag(name, owner): f.metadata.get("help", "").replace(
                    ALGORITHMS_PLACEHOLDER, algorithm_choices())
                for name, f, owner in cls.option_fields()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Any:
        """Build a config from a mapping, rejecting unknown keys and converting values to field
        types."""
        known = {name: owner for name, _, owner in cls.option_fields()}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(
                f"unknown config key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} in {source}: "
                f"see `rebel {cls.command} --help` for the list of fields"
            )
        converted = {
            k: convert(k, v, typing.get_type_hints(known[k])[k], source) for k, v in values.items()
        }
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Any:
        """Load a YAML file of `field: value` pairs."""
        return cls.from_dict(read_yaml(path), source=str(path))

    def with_overrides(self, overrides: dict[str, Any], source: str = "command line") -> Any:
        """Return a copy with some fields replaced (values may be strings from the command line)."""
        merged = asdict(self)
        merged.update(overrides)
        return type(self).from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        """Write the config as YAML, atomically (a crash never leaves a half-written config)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        os.replace(tmp, path)


def option(default: Any = dataclasses.MISSING, help: str = "", *,
           factory: Callable[[], Any] | None = None) -> Any:
    """A config field with its help text, CleanRL's `field(metadata={"help": ...})` in short:
    `eta: float = option(1.0, "REBEL step size")`, or `option(help=..., factory=list)` for a
    mutable default. `--help`, docs/configuration.md and tuning read the help from here."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


class GroupedConfig(ConfigBase):
    """A config made of group dataclasses (`groups()`: attribute name -> class), read and written by
    flat option names as well as by group.

    `RebelConfig(eta=0.5)`, `config.eta` and `config.rebel.eta` all reach the same value; `to_dict`
    and the saved YAML are nested by group; `from_dict` takes nested groups, flat names or
    `group.name`. Subclasses may set `defaults` (flat name -> value) to change a shared group's
    defaults for one stage, and `shared_groups()`/`active_group()` to let a name that several
    groups share be given flat. A group dataclass may declare `renamed = {"old": "new"}`: the old
    name, flat or `group.old`, still works with a one-line FutureWarning.
    """

    defaults: dict[str, Any] = {}

    @classmethod
    def groups(cls) -> dict[str, type]:
        raise NotImplementedError

    @classmethod
    def shared_groups(cls) -> set[str]:
        """The groups whose shared names may be given flat (then `active_group` picks one)."""
        return set()

    def active_group(self, owners: list[str]) -> str | None:
        """Which of `owners` (groups sharing a name) a flat name means now; None: ambiguous."""
        return None

    def __init__(self, **values: Any) -> None:
        groups = {name: group() for name, group in self.groups().items()}
        object.__setattr__(self, "_groups", groups)
        shared = self.shared_names()
        merged = {**self.defaults, **values}
        # a flat shared name goes last: the algorithm it depends on may be among `values`
        for name, value in sorted(merged.items(), key=lambda item: item[0] in shared):
            if name in groups and dataclasses.is_dataclass(value):
                groups[name] = copy.deepcopy(value)
            elif name in groups and isinstance(value, dict):
                self._assign({name: value}, "arguments")
            else:
                setattr(self, name, value)

    # --- flat names -------------------------------------------------------------------------------
    @classmethod
    def option_fields(cls) -> list[tuple[str, dataclasses.Field, type]]:
        return [(f.name, f, group) for group in cls.groups().values() for f in fields(group)]

    @classmethod
    def shared_names(cls) -> set[str]:
        """Option names that more than one group declares."""
        counts = Counter(name for name, _, _ in cls.option_fields())
        return {name for name, count in counts.items() if count > 1}

    @classmethod
    def flag(cls, name: str, owner: type) -> str:
        """`name`, or `group.name` for a name that several groups share."""
        if name not in cls.shared_names():
            return name
        return next(f"{g}.{name}" for g, klass in cls.groups().items() if klass is owner)

    @classmethod
    def owners(cls, name: str) -> list[str]:
        """The groups that declare option `name`."""
        return [g for g, klass in cls.groups().items() if name in {f.name for f in fields(klass)}]

    @classmethod
    def renames(cls) -> dict[str, str]:
        """Deprecated names (flat and `group.old`) -> `group.new`, from each group's `renamed`."""
        renames = {}
        for group, klass in cls.groups().items():
            for old, new in getattr(klass, "renamed", {}).items():
                renames[old] = renames[f"{group}.{old}"] = f"{group}.{new}"
        return renames

    def locate(self, name: str, source: str = "config") -> tuple[str, str]:
        """(group, field) of a flat name or `group.field`; ConfigError if unknown or ambiguous."""
        groups = self.groups()
        renamed = self.renames().get(name)
        if renamed is not None:
            warnings.warn(f"{name} in {source} is deprecated: it is read as {renamed}, write that",
                          FutureWarning, stacklevel=4)
            name = renamed
        if "." in name:
            group, _, field_name = name.partition(".")
            if group in groups and field_name in {f.name for f in fields(groups[group])}:
                return group, field_name
            owners = []
        else:
            owners = self.owners(name)
            if len(owners) == 1:
                return owners[0], name
        if len(owners) > 1:
            qualified = " or ".join(f"{g}.{name}" for g in owners)
            if set(owners) <= self.shared_groups():
                active = self.active_group(owners)
                if active is not None:
                    return active, name
                raise ConfigError(f"{name} in {source} is an option of {', '.join(owners)}, not "
                                  f"of the chosen one: write {qualified}")
            raise ConfigError(f"{name} in {source} exists in groups {' and '.join(owners)}: write "
                              f"{qualified}")
        raise ConfigError(f"unknown config key {name!r} in {source}: see `rebel {self.command} "
                          "--help` for the list of fields")

    def __getattr__(self, name: str) -> Any:
        groups = self.__dict__.get("_groups")
        if groups is None or name.startswith("__"):
            raise AttributeError(name)
        if name in groups:
            return groups[name]
        try:
            group, field_name = self.locate(name)
        except ConfigError:
            raise AttributeError(f"{type(self).__name__} has no option {name!r}") from None
        return getattr(groups[group], field_name)

    def __setattr__(self, name: str, value: Any) -> None:
        try:
            group, field_name = self.locate(name, source="arguments")
        except ConfigError as exc:
            raise TypeError(str(exc)) from None
        setattr(self._groups[group], field_name, value)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._groups == other._groups

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={group!r}" for name, group in self._groups.items())
        return f"{type(self).__name__}({inner})"

    def __deepcopy__(self, memo: dict) -> Any:
        clone = type(self).__new__(type(self))
        object.__setattr__(clone, "_groups", copy.deepcopy(self._groups, memo))
        return clone

    # --- construction
    # -------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Any:
        """From nested groups (`model: {...}`), flat names, or `group.name` keys, converting each
        value."""
        return cls()._assign(values, source)

    def with_overrides(self, overrides: dict[str, Any], source: str = "command line") -> Any:
        return copy.deepcopy(self)._assign(overrides, source)

    def _assign(self, values: dict[str, Any], source: str) -> Any:
        """Set converted `values` in place (every unknown key named in one error first); return
        self. Flat shared names go last, after the algorithm they depend on."""
        pairs = self.upgrade(_flatten(type(self), values))
        renames = self.renames()
        unknown = [key for key, _ in pairs if key not in renames and not self._known(key)]
        if unknown:
            raise ConfigError(
                f"unknown config key{'s' if len(unknown) > 1 else ''} "
                f"{', '.join(map(repr, unknown))} in {source}: "
                f"see `rebel {self.command} --help` for the list of fields"
            )
        shared = self.shared_names()
        for key, value in sorted(pairs, key=lambda pair: pair[0] in shared):
            group, field_name = self.locate(key, source)
            hint = typing.get_type_hints(self.groups()[group])[field_name]
            setattr(self._groups[group], field_name, convert(field_name, value, hint, source))
        return self

    def upgrade(self, pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """Rewrite (key, value) pairs of an older saved layout; the default keeps them as they
        are."""
        return pairs

    @classmethod
    def _known(cls, key: str) -> bool:
        group, _, name = key.rpartition(".")
        groups = cls.groups()
        return any(
            name in {f.name for f in fields(klass)}
            for g, klass in groups.items()
            if not group or g == group
        )

    def to_dict(self) -> dict[str, Any]:
        return {name: asdict(group) for name, group in self._groups.items()}

    def _flat_names(self) -> list[tuple[str, str]]:
        return [(group, f.name) for group, klass in self.groups().items() for f in fields(klass)]

    def check_finite(self) -> None:
        """YAML `.nan`/`.inf` and "nan" on the command line parse as floats: refuse them
        everywhere."""
        for group, name in self._flat_names():
            value = getattr(self._groups[group], name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{name} must be a finite number, got {item}")


def _flatten(cls: type, values: dict[str, Any]) -> list[tuple[str, Any]]:
    """`{group: {field: v}}` and flat or dotted keys, as (key, value) pairs with `group.field` keys
    for nested ones."""
    groups = cls.groups()
    pairs = []
    for key, value in values.items():
        if key in groups and isinstance(value, dict):
            pairs.extend((f"{key}.{name}", item) for name, item in value.items())
        elif key in groups and dataclasses.is_dataclass(value):
            pairs.extend((f"{key}.{name}", item) for name, item in asdict(value).items())
        else:
            pairs.append((key, value))
    return pairs


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The option fields of a config class (flat or grouped), in declaration order (for --help and
    docs)."""
    return [f for _, f, _ in cls.option_fields()]
