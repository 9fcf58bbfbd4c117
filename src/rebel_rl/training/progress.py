"""The one live progress bar (rich) of every trainer: a title, the bar, done/total, a stats text
and the times. The online loop shows reward and KL in it, the offline stages their loss."""
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


class ProgressBar:
    """Context manager around a rich progress bar over `total` steps (`completed` already done,
    e.g. on resume); does nothing visible when disabled."""

    def __init__(self, title: str, total: int, completed: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn(f"[bold]{title}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task(title, total=total, completed=completed, stats="")

    def __enter__(self) -> "ProgressBar":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def show(self, stats: str, advance: int = 1) -> None:
        """Move the bar `advance` steps on and replace its stats text with `stats`."""
        self.progress.update(self.task, advance=advance, stats=stats)
