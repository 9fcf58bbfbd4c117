"""The run directory: config, metrics.jsonl, sample completions, TensorBoard events, plots."""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from ...errors import RunDirError

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
COMPLETIONS_FILE = "completions.jsonl"
# What a run writes; --overwrite removes exactly these, never other files the user keeps there.
RUN_ARTIFACTS = [CONFIG_FILE, METRICS_FILE, COMPLETIONS_FILE, "tensorboard", "checkpoints", "final", "inputs.json",
                 "eval_before.json", "eval.json", "eval.md", "reward_kl.png",
                 "samples", "samples_before_after.png", "reward_curves.png"]  # the last three: image runs


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    """Create the run directory; refuse to reuse one that holds a run unless `overwrite`."""
    if path.exists() and not path.is_dir():
        raise RunDirError(f"output_dir {path} is a file: choose a folder")
    holds_run = (path / CONFIG_FILE).exists() or (path / METRICS_FILE).exists()
    if holds_run and not overwrite:
        raise RunDirError(
            f"output_dir {path} already holds a run: pass --overwrite to replace it, "
            f"--resume {path} to continue it, or choose another --output_dir"
        )
    if holds_run:
        for name in RUN_ARTIFACTS:
            target = path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    path.mkdir(parents=True, exist_ok=True)


class MetricsLogger:
    """Appends one JSON line per iteration to metrics.jsonl and mirrors scalars to the trackers of
    `output.report_to` (an OutputConfig): TensorBoard, wandb, trackio (trackers.py), under the same names.
    `run_config` (the whole config as a dict) is logged to the external trackers once."""

    def __init__(self, run_dir: Path, output, enabled: bool = True, images: bool = False,
                 run_config: dict[str, Any] | None = None) -> None:
        self.run_dir = run_dir
        self.enabled = enabled
        self.images = images  # completions are images (the policy says so): saved as PNGs, named in the jsonl
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
    """On resume, drop log lines written after the checkpoint we continue from (they will be redone)."""
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
