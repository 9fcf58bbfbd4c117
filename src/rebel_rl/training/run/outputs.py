"""The run directory: config, metrics.jsonl, sample completions, TensorBoard events, plots."""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from ...errors import RunDirError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
# What a run writes; --overwrite removes exactly these, never other files the user keeps there.
RUN_ARTIFACTS = [
    CONFIG_FILE,
    METRICS_FILE,
    COMPLETIONS_FILE,
    "tensorboard",
    "checkpoints",
    "final",
    "inputs.json",
    "eval_before.json",
    "eval.json",
    "eval.md",
    "reward_kl.png",
    # the last three: image runs
    "samples",
    "samples_before_after.png",
    "reward_curves.png",
]


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    """Create the run directory; refuse to reuse one that holds a run unless `overwrite`.

    A folder holds a run once it has a checkpoint, a final model or a completed iteration in
    metrics.jsonl. What a start that failed earlier left (config.yaml, eval_before.json, ...) is no
    run: it is replaced without --overwrite, with a one-line note. Files that are not run artifacts
    are always kept."""
    _check_creatable(path)
    if holds_run(path) and not overwrite:
        raise RunDirError(
            f"output_dir {path} already holds a run: pass --overwrite to replace it, "
            f"--resume {path} to continue it, or choose another --output_dir"
        )
    leftovers = [name for name in RUN_ARTIFACTS if (path / name).exists()]
    if leftovers and not overwrite:
        print(
            f"note: reusing {path}: it holds no checkpoint and no completed iteration, only what "
            f"an earlier "
            f"start left ({', '.join(leftovers)}), which is replaced",
            file=sys.stderr,
        )
    for name in leftovers:
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunDirError(
            f"cannot create output_dir {path} ({type(exc).__name__}: {exc.strerror or exc}): "
            "choose another --output_dir"
        ) from None


def holds_run(path: Path) -> bool:
    """Whether `path` holds a run that only --overwrite may replace: a checkpoint (not a partial
    .tmp- one), a final model, or a completed iteration in metrics.jsonl."""
    checkpoints = path / "checkpoints"
    return (
        any(checkpoints.glob("iter-*"))
        or any(checkpoints.glob(".old-iter-*"))
        or (path / "final").exists()
        or has_completed_iteration(path)
    )


def has_completed_iteration(run_dir: Path) -> bool:
    """Whether metrics.jsonl records anything complete (an iteration, an evaluation, a stage's
    step)."""
    return bool(read_metrics(run_dir))


def _check_creatable(path: Path) -> None:
    """RunDirError when `path` or one of its parents is a file (the folder could never be
    created)."""
    for folder in [path, *path.parents]:
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"is under {folder}, which is a file"
                raise RunDirError(f"output_dir {path} {where}: choose a folder")
            return


class MetricsLogger:
    """Appends one JSON line per iteration to metrics.jsonl and mirrors scalars to the trackers of
    `output.report_to` (an OutputConfig): TensorBoard, wandb, trackio (trackers.py), under the same
    names. `run_config` (the whole config as a dict) is logged to the external trackers once."""

    def __init__(self, run_dir: Path, output, enabled: bool = True, images: bool = False,
                 run_config: dict[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        # completions are images (the policy says so): saved as PNGs, named in the jsonl
        self.images = images
        self.writer = None
        self.external = None
        report_to = output.trackers()
        if enabled and "tensorboard" in report_to:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        if enabled and set(report_to) - {"tensorboard"}:
            from .trackers import ExternalTrackers

            self.external = ExternalTrackers(report_to, run_dir, output.tracker_project,
                                             output.run_name or run_dir.name, run_config or {})

    def log(self, metrics: dict[str, Any], completions: list[dict[str, Any]] | None = None) -> None:
        if not self.enabled:
            return
        step = int(metrics["iteration"])
        _append_jsonl(self.run_dir / METRICS_FILE, metrics)
        if self.images and completions:
            from .image_outputs import (
                image_records,  # images go to samples/*.png, their names to the jsonl
            )

            completions = image_records(self.run_dir, step, completions)
        for record in completions or []:
            _append_jsonl(self.run_dir / COMPLETIONS_FILE, {"iteration": step, **record})
        if self.writer is not None:
            for key, value in metrics.items():
                if isinstance(value, (int, float)) and key != "iteration" and math.isfinite(value):
                    self.writer.add_scalar(key, value, step)
            self.writer.flush()
        if self.external is not None:
            self.external.log(metrics, completions or [], step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        if self.external is not None:
            self.external.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The iterations logged in metrics.jsonl."""
    return _read_jsonl(run_dir / METRICS_FILE)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSON-lines file; a torn last line (a crash mid-write) is skipped."""
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def truncate_logs(run_dir: Path, last_iteration: int) -> None:
    """On resume, drop log lines written after the checkpoint we continue from (they will be
    redone)."""
    for name in (METRICS_FILE, COMPLETIONS_FILE):
        path = run_dir / name
        if not path.is_file():
            continue
        kept = [r for r in _read_jsonl(path) if r["iteration"] <= last_iteration]
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, path)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def _append_jsonl(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
