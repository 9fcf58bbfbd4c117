"""The online loop's progress bar: training/progress.py's bar, showing reward and KL as iterations
finish."""
from __future__ import annotations

from typing import Any

from ..progress import ProgressBar


class TrainingProgress(ProgressBar):
    """The shared bar titled REBEL, over iterations; does nothing when disabled."""

    def __init__(self, total: int, completed: int, enabled: bool = True) -> None:
        super().__init__("REBEL", total, completed=completed, enabled=enabled)

    def update(self, metrics: dict[str, Any]) -> None:
        """One more iteration done: show its reward and KL."""
        self.show(f"reward {metrics['reward']:+.3f}  kl {metrics['kl']:.3f}")
