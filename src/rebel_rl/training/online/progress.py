"""A live progress bar (rich) showing reward and KL as iterations finish."""
from __future__ import annotations

from typing import Any

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class TrainingProgress:
    """Context manager around a rich progress bar; does nothing when disabled."""

    def __init__(self, total: int, completed: int, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]REBEL"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, completed=completed, stats="")

    def __enter__(self) -> "TrainingProgress":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def update(self, metrics: dict[str, Any]) -> None:
        stats = f"reward {metrics['reward']:+.3f}  kl {metrics['kl']:.3f}"
        self.progress.update(self.task, advance=1, stats=stats)
