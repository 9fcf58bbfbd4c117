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
import types
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

CONFIG_FOLDER = Path(__file__).resolve().parents[1] / "configs"


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


# --- checks every group uses
# ---------------------------------------------------------------------------
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


def config_fields(cls: type) -> list[dataclasses.Field]:
    """The option fields of a config class (flat or grouped), in declaration order (for --help and
    docs)."""
    return [f for _, f, _ in cls.option_fields()]
