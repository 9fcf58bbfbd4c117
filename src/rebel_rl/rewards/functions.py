"""Load user reward functions from `module.sub:function` or `path/to/file.py:function` specs."""
from __future__ import annotations

import importlib
import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

from rebel_rl.errors import RewardError

FORMS = "'module.sub:function' or 'path/to/file.py:function'"
# Gives every file-loaded module a distinct name, so two files called reward.py do not clash.
_FILE_MODULE_IDS = itertools.count()


def load_reward_function(spec: str) -> Callable:
    """Import and return the callable named by `spec` (`module.sub:function` or `file.py:function`).

    Raises RewardError with one line for a malformed spec, a missing file, an import error, a
    missing attribute or an attribute that is not callable.
    """
    target, sep, name = spec.rpartition(":")  # rpartition keeps Windows drive letters in target
    if not sep or not target or not name:
        raise RewardError(f"reward function spec '{spec}' must look like {FORMS}")
    module = _import_file(target) if _is_file_target(target) else _import_module(target)
    if not hasattr(module, name):
        raise RewardError(f"reward function '{name}' not found in {target}: "
                          "check the name after ':'")
    function = getattr(module, name)
    if not callable(function):
        raise RewardError(
            f"'{spec}' is a {type(function).__name__}, not a function: point to a callable"
        )
    return function


def _is_file_target(target: str) -> bool:
    """Whether the part before ':' names a Python file rather than a dotted module."""
    return target.endswith(".py") or "/" in target or "\\" in target


def _import_module(name: str) -> ModuleType:
    """Import a dotted module, turning any import-time failure into a one-line RewardError."""
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise RewardError(f"cannot import reward module '{name}': {_one_line(exc)}") from None


def _import_file(target: str) -> ModuleType:
    """Execute a Python file as a fresh module; its folder is importable while it runs."""
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise RewardError(f"reward file not found: {target} (check the path before ':')")
    module_name = f"rebel_rl_user_reward_{next(_FILE_MODULE_IDS)}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise RewardError(f"cannot import reward file {target}: not a Python source file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_name] = module  # pickling and dataclasses look the module up here
    sys.path.insert(0, str(path.parent))  # lets the file import helper modules next to it
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise RewardError(f"cannot import reward file {target}: {_one_line(exc)}") from None
    finally:
        sys.path.remove(str(path.parent))
    return module


def _one_line(exc: BaseException) -> str:
    """The exception type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
