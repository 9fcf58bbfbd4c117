"""Resumable checkpoints, written atomically: a crash never leaves a half-written one in place.

A checkpoint folder holds the model as `save_pretrained` writes it (the LoRA adapter alone when LoRA is
on), the tokenizer (a diffusion policy: its scheduler/ instead), and `trainer_state.pt` (optimizer,
scheduler, RNG, counters). It is written under a
temporary name and renamed into place only when complete, so `latest_checkpoint` never sees a partial one.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, Callable

import torch

from ...errors import RunDirError
from ...policies.base import Policy

STATE_FILE = "trainer_state.pt"


def save_pretrained_atomic(model, tokenizer, target: Path, extra: Callable[[Path], None] | None = None) -> None:
    """`save_pretrained` (plus `extra(folder)`) into a temporary folder, then swap it into `target`."""

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    save_folder_atomic(write, target, extra)


def save_policy_atomic(policy: Policy, target: Path, model=None, extra: Callable[[Path], None] | None = None,
                       state_dict: dict | None = None) -> None:
    """A policy's `save_pretrained` files, atomically: the model (`model` instead, e.g. a merged one; its
    weights from `state_dict` when given, e.g. gathered from FSDP shards) and what loads it back (the
    tokenizer, a diffusion policy's scheduler/)."""
    save_folder_atomic(lambda tmp: policy.save_pretrained(tmp, model=model, state_dict=state_dict), target, extra)


def save_folder_atomic(write: Callable[[Path], None], target: Path, extra: Callable[[Path], None] | None = None) -> None:
    """`write(folder)` (plus `extra(folder)`) into a temporary folder, then swap it into `target`."""
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write(tmp)
    if extra is not None:
        extra(tmp)
    _swap_into_place(tmp, target)


def save_checkpoint(folder: Path, iteration: int, policy, optimizer_state: dict, scheduler,
                    counters: dict[str, Any], keep: int = 2, model_state: dict | None = None) -> Path:
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
    save_policy_atomic(policy, target, extra=lambda tmp: torch.save(state, tmp / STATE_FILE), state_dict=model_state)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints under `folder`, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("iter-*") if (p / STATE_FILE).is_file())


def latest_checkpoint_or_fail(run_dir: Path) -> Path:
    """The newest complete checkpoint of the run in `run_dir`, or a RunDirError saying why there is none."""
    folder = run_dir / "checkpoints"
    for old in folder.glob(".old-iter-*"):
        # A crash between the two renames of a re-save left the complete old copy aside: put it back.
        target = folder / old.name.removeprefix(".old-")
        if not target.exists() and (old / STATE_FILE).is_file():
            os.replace(old, target)
    found = list_checkpoints(folder)
    if not found:
        raise RunDirError(f"no checkpoint to resume in {run_dir}: start a new run instead (without --resume)")
    return found[-1]


def load_trainer_state(path: Path, scheduler) -> dict[str, Any]:
    """Restore the scheduler and RNG of checkpoint `path`; return its state (the optimizer's included,
    for the caller to load into the prepared optimizer)."""
    state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=False)
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    return state


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Replace `target` by the complete folder `tmp`; the old one is removed only after the rename."""
    old = target.with_name(f".old-{target.name}")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)
