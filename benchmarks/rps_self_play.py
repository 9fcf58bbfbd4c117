"""REBEL on an intransitive preference (rock-paper-scissors): the iterates and their running average on the
simplex. Each iteration minimises the exact expected REBEL preference loss (pairs from pi_t, target
P(y > y') - 1/2) to convergence, as tests/test_rebel_preferences.py does.

    .venv/bin/python benchmarks/rps_self_play.py     # writes docs/extensions/rps.png, prints the distances

Takes a few seconds on one CPU core.
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from rebel_rl.algorithms.tabular import preference_self_play  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "docs" / "extensions" / "rps.png"
RPS = torch.tensor([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])  # P[a, b] = P(a > b): rock, paper, scissors
PI0, ETA, ITERATIONS = torch.tensor([0.4, 0.35, 0.25]), 0.5, 200
CORNERS = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])  # rock, paper, scissors


def to_plane(points: torch.Tensor) -> torch.Tensor:
    """Barycentric (.., 3) -> 2-D points in the triangle."""
    return points.float() @ CORNERS


def main() -> None:
    iterates = preference_self_play(RPS, PI0, ETA, ITERATIONS)
    average = iterates.cumsum(0) / torch.arange(1, len(iterates) + 1)[:, None]
    distance = lambda p: (p - 1 / 3).abs().max(-1).values  # noqa: E731
    for t in (10, 50, 100, 200):
        print(f"t={t:3d}  max|average - 1/3| = {distance(average[t]):.3f}   max|pi_t - 1/3| = {distance(iterates[t]):.3f}")

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
    ax = axes[0]
    ax.fill(*to_plane(torch.eye(3)).T, color="0.95", edgecolor="0.6")
    for name, corner, offset in zip(["rock", "paper", "scissors"], CORNERS, [(-0.04, -0.05), (0.04, -0.05), (0, 0.03)]):
        ax.annotate(name, corner.tolist(), xytext=(corner[0] + offset[0], corner[1] + offset[1]), ha="center")
    path, mean = to_plane(iterates), to_plane(average)
    ax.plot(path[:, 0], path[:, 1], lw=0.8, color="tab:blue", alpha=0.7, label="iterates π_t (last iterate)")
    ax.plot(mean[:, 0], mean[:, 1], lw=1.8, color="tab:red", label="running average of π_0..π_t")
    ax.scatter(*to_plane(torch.full((3,), 1 / 3)).tolist(), marker="*", s=140, color="k", zorder=5, label="Nash (1/3, 1/3, 1/3)")
    ax.scatter(*path[0].tolist(), s=25, color="tab:blue", zorder=5)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.legend(loc="upper right", fontsize=8, bbox_to_anchor=(1.08, 1.02))
    ax.set_title(f"REBEL self-play on rock-paper-scissors (η = {ETA}, {ITERATIONS} iterations)", fontsize=9, pad=16)
    ax = axes[1]
    steps = torch.arange(len(iterates))
    ax.plot(steps, distance(iterates), color="tab:blue", lw=0.8, label="last iterate")
    ax.plot(steps, distance(average), color="tab:red", lw=1.8, label="average iterate")
    ax.set(xlabel="iteration", ylabel="max |π − 1/3|", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
