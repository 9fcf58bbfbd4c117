"""Resumable checkpoints, written atomically: a crash never leaves a half-written one in place.

A checkpoint folder holds the model as `save_pretrained` writes it (the LoRA adapter alone when LoRA
is on), the tokenizer (a diffusion policy: its scheduler/ instead), and `trainer_state.pt`
(optimizer, scheduler, RNG, counters). It is written under a temporary name and renamed into place
only when complete, so `latest_checkpoint` never sees a partial one.
"""
from __future__ import annotations

import contextlib
import math
import os
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ...errors import RebelError, RunDirError, first_line
from ...policies.base import Policy
from .outputs import holds_run

STATE_FILE = "trainer_state.pt"
# What torch.load and safetensors raise for a truncated or corrupt file.
_UNREADABLE = (
    SafetensorError,
    pickle.UnpicklingError,
    EOFError,
    RuntimeError,
    OSError,
    ValueError,
    KeyError,
)


def save_pretrained_atomic(
    model, tokenizer, target: Path, extra: Callable[[Path], None] | None = None
) -> None:
    """`save_pretrained` (plus `extra(folder)`) into a temporary folder, then swap it into
    `target`."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    save_folder_atomic(write, target, extra)


def save_policy_atomic(
    policy: Policy,
    target: Path,
    model=None,
    extra: Callable[[Path], None] | None = None,
    state_dict: dict | None = None,
) -> None:
    """A policy's `save_pretrained` files, atomically: the model (`model` instead, e.g. a merged
    one; its weights from `state_dict` when given, e.g. gathered from FSDP shards) and what loads it
    back (the tokenizer, a diffusion policy's scheduler/)."""
    save_folder_atomic(
        lambda tmp: policy.save_pretrained(tmp, model=model, state_dict=state_dict), target, extra
    )


def save_folder_atomic(
    write: Callable[[Path], None], target: Path, extra: Callable[[Path], None] | None = None
) -> None:
    """`write(folder)` (plus `extra(folder)`) into a temporary folder, then swap it into
    `target`."""
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if extra is not None:
        extra(tmp)
    _swap_into_place(tmp, target)


def save_checkpoint(
    folder: Path,
    iteration: int,
    policy,
    optimizer_state: dict,
    scheduler,
    counters: dict[str, Any],
    keep: int = 2,
    model_state: dict | None = None,
) -> Path:
    """Write checkpoint `iter-XXXXXX` under `folder` atomically and keep only the last `keep`.
    `model_state`: whole weights gathered from shards (else the model saves its own)."""
    target = folder / f"iter-{iteration:06d}"
    state = {
        "iteration": iteration,
        "optimizer": optimizer_state,
        "scheduler": scheduler.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "counters": counters,
    }
    save_policy_atomic(
        policy,
        target,
        extra=lambda tmp: torch.save(state, tmp / STATE_FILE),
        state_dict=model_state,
    )
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("iter-*") if (p / STATE_FILE).is_file())


def latest_checkpoint_or_fail(run_dir: Path) -> Path:
    """The newest checkpoint of the run in `run_dir` that loads, or a RunDirError saying why there
    is none. A newer one that does not load (a truncated file) is skipped with a one-line note
    naming it and why."""
    if not _complete_checkpoints(run_dir / "checkpoints"):
        raise RunDirError(
            f"no checkpoint to resume in {run_dir}: start a new run instead (without --resume)"
        )
    return checkpoint_to_resume(run_dir)


def checkpoint_to_resume(run_dir: Path) -> Path | None:
    """Where `--resume` continues the run in `run_dir`: its newest checkpoint that loads (newer ones
    that do not are skipped with a one-line note each), or None when the folder holds no run yet (no
    checkpoint and no completed iteration: the run starts from the beginning, with a note).
    RunDirError when it has completed iterations but no checkpoint, or when no checkpoint loads."""
    found = _complete_checkpoints(run_dir / "checkpoints")
    if not found:
        if holds_run(run_dir):
            raise RunDirError(
                f"{run_dir} has completed iterations but no checkpoint to resume from (save_every "
                f"0, "
                "or stopped before the first one): start it again with --overwrite instead of "
                "--resume"
            )
        print(
            f"note: {run_dir} has no checkpoint and no completed iteration: starting the run from "
            f"the beginning",
            file=sys.stderr,
        )
        return None
    problems = []
    for path in reversed(found):
        problem = checkpoint_problem(path)
        if problem is None:
            for skipped, why in problems:
                print(
                    f"note: skipping checkpoint {skipped} ({why}): resuming from {path.name}",
                    file=sys.stderr,
                )
            return path
        problems.append((path, problem))
    problems = [f"{path.name} ({why})" for path, why in problems]
    raise RunDirError(
        f"no checkpoint of {run_dir} loads: {'; '.join(problems)}: start the run again with "
        f"--overwrite"
    )


def _complete_checkpoints(folder: Path) -> list[Path]:
    """`list_checkpoints(folder)`, after putting back a complete copy a crash mid-re-save left
    aside."""
    for old in folder.glob(".old-iter-*"):
        # A crash between the two renames of a re-save left the complete old copy aside: put it
        # back.
        target = folder / old.name.removeprefix(".old-")
        if not target.exists() and (old / STATE_FILE).is_file():
            os.replace(old, target)
    return list_checkpoints(folder)


def checkpoint_problem(path: Path) -> str | None:
    """Why checkpoint `path` cannot be resumed from (a truncated or unreadable file), or None if it
    loads."""
    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "scheduler" not in state or "iteration" not in state:
            raise ValueError("not a trainer state")
    except _UNREADABLE as exc:
        return f"{STATE_FILE} is unreadable: {type(exc).__name__}: {first_line(exc)}"
    for weights in sorted(path.glob("*.safetensors")):
        try:
            load_file(weights)
        except _UNREADABLE as exc:
            return f"{weights.name} is unreadable: {type(exc).__name__}: {first_line(exc)}"
    return None


def load_trainer_state(path: Path, scheduler, new_schedule: bool = False) -> dict[str, Any]:
    """Restore the scheduler and RNG of checkpoint `path`; return its state (the optimizer's
    included, for the caller to load into the prepared optimizer).

    `scheduler` is built from the current options. When they define another learning rate at the
    checkpoint's step than the run had (a larger num_iterations re-stretches a decayed schedule),
    this is a RunDirError unless `new_schedule`: then the run continues on the schedule of the new
    options."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    configured = list(scheduler.base_lrs)
    scheduler.load_state_dict(state["scheduler"])
    _check_schedule(scheduler, configured, state["scheduler"].get("_last_lr"), new_schedule)
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def _check_schedule(
    scheduler, configured: list[float], saved: list[float] | None, new_schedule: bool
) -> None:
    """Refuse (unless `new_schedule`) a resume whose options give another learning rate at the
    checkpoint's step than the run had; with `new_schedule`, adopt the new options' base rates
    too."""
    step = scheduler.last_epoch
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if saved is None or lambdas is None:
        return
    expected = [base * fn(step) for base, fn in zip(configured, lambdas)]
    if all(math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(expected, saved)):
        return
    if new_schedule:
        scheduler.base_lrs = configured
        return
    raise RunDirError(
        f"these options change the learning-rate schedule: at optimizer step {step} the run's rate "
        f"is "
        f"{saved[0]:.3g}, the new options give {expected[0]:.3g} (num_iterations, lr_scheduler, "
        f"warmup_ratio and "
        "learning_rate set it): resume with the run's values, or pass --new_lr_schedule to "
        "continue on the new "
        "schedule from this step"
    )


@contextlib.contextmanager
def config_restored_on_error(path: Path) -> Iterator[None]:
    """Put file `path` (a run's config.yaml) back as it was if the block raises a RebelError:
    setting up a resume rewrites it with the new options, which a refused resume must not leave
    behind."""
    saved = path.read_bytes() if path.is_file() else None
    try:
        yield
    except RebelError:
        if saved is not None:
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_bytes(saved)
            os.replace(tmp, path)
        raise


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace `target` by the complete folder `tmp`; the old one is removed only after the
    rename."""
    old = target.with_name(f".old-{target.name}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
