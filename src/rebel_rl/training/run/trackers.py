"""Experiment trackers beside metrics.jsonl: Weights & Biases and trackio through accelerate's
tracker classes (`report_to: [tensorboard, wandb, trackio]`). Each receives the same scalar metrics
under the same names as metrics.jsonl and TensorBoard, the run's config once, and the sample
completions as a table. Neither package is a dependency: `pip install 'rebel-rl[wandb]'` /
`'rebel-rl[trackio]'` (the config refuses the name with one line when it is missing). Offline use:
`WANDB_MODE=offline`; trackio is local unless told to sync to a Space.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

TABLE_NAME = "completions"


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics record, without the step (`iteration`)."""
    return {key: value for key, value in metrics.items()
            if isinstance(value, (int, float)) and key != "iteration" and math.isfinite(value)}


class ExternalTrackers:
    """The wandb/trackio runs named in `report_to` (TensorBoard is written by MetricsLogger
    itself)."""

    def __init__(
        self, names: list[str], run_dir: Path, project: str, run_name: str, config: dict[str, Any]
    ) -> None:
        from accelerate.tracking import TrackioTracker, WandBTracker

        self.trackers: dict[str, Any] = {}
        if "wandb" in names:
            self.trackers["wandb"] = WandBTracker(project, name=run_name, dir=str(run_dir))
        if "trackio" in names:
            self.trackers["trackio"] = TrackioTracker(
                project, name=run_name, auto_log_cpu=False, auto_log_gpu=False
            )
        for tracker in self.trackers.values():
            tracker.start()
            tracker.store_init_configuration(config)

    def log(self, metrics: dict[str, Any], samples: list[dict[str, Any]], step: int) -> None:
        values = scalars(metrics)
        for tracker in self.trackers.values():
            tracker.log(values, step=step)
        if samples:
            columns = list(samples[0])
            rows = [[_cell(record.get(c)) for c in columns] for record in samples]
            if "wandb" in self.trackers:
                self.trackers["wandb"].log_table(TABLE_NAME, columns=columns, data=rows, step=step)
            if "trackio" in self.trackers:
                import trackio

                self.trackers["trackio"].log(
                    {TABLE_NAME: trackio.Table(columns=columns, data=rows)}, step=step
                )

    def close(self) -> None:
        for tracker in self.trackers.values():
            tracker.finish()


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str)) or value is None else str(value)
