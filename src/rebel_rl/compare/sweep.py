"""The 2-D validation sweep of `rebel compare --sweep true`: per trained method, learning rate x the
method's own knob (tuned.knob_of), first seed only, judged by the validation win rate.

A coarse grid first (`sweep_size` values per axis), then `sweep_refine` cells of the fine grid
around the best coarse cell; the best of all the method's cells is chosen. Every method gets the
same number of cells. The chosen cells (and every cell's scores) go to `tuned.json` in the output
folder, which the grid then reads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from .config import CompareConfig
from .jobs import method_job
from .results import metric
from .tuned import LEARNING_RATE, knob_of, swept_methods

Key = tuple[float, float]  # (learning rate, knob value)


def sweep_methods(config: CompareConfig) -> list[str]:
    """The methods of this invocation that have a knob to sweep (not SFT, not REBEL's
    extensions)."""
    return [m for m in config.algorithms if m in swept_methods()]


def axes(method: str) -> tuple[tuple[list, ...], tuple[list, ...]]:
    """(learning-rate axis, knob axis) of `method`, each (fine values, coarse three, coarse two)."""
    return LEARNING_RATE, knob_of(method)[1]


def coarse_keys(method: str, size: int) -> list[Key]:
    """The coarse grid: each axis's coarse three (size 3) or its reduced pair (size 2)."""
    lr_axis, knob_axis = axes(method)
    pick = 1 if size == 3 else 2
    return [(lr, k) for lr in lr_axis[pick] for k in knob_axis[pick]]


def refine_keys(method: str, scores: dict[Key, float], count: int) -> list[Key]:
    """`count` fine-grid cells not yet run, nearest the best cell so far (Euclidean distance in
    fine-grid steps); among equally near ones, those whose run neighbours score higher on average
    come first, so an edge of the grid that holds the best cell is extended before the space between
    it and a worse cell."""
    (fine_lr, *_), (fine_knob, *_) = axes(method)
    run = {(fine_lr.index(lr), fine_knob.index(k)): s for (lr, k), s in scores.items()}
    bi, bj = _index_of(fine_lr, fine_knob, best_key(scores))

    def rank(cell: tuple[int, int]) -> tuple[float, float, int, int]:
        i, j = cell
        near = [s for (a, b), s in run.items() if max(abs(a - i), abs(b - j)) <= 1]
        return (i - bi) ** 2 + (j - bj) ** 2, -(sum(near) / len(near)) if near else math.inf, i, j

    free = [(i, j) for i in range(len(fine_lr)) for j in range(len(fine_knob)) if (i, j) not in run]
    return [(fine_lr[i], fine_knob[j]) for i, j in sorted(free, key=rank)[:count]]


def _index_of(fine_lr: list, fine_knob: list, key: Key) -> tuple[int, int]:
    return fine_lr.index(key[0]), fine_knob.index(key[1])


def best_key(scores: dict[Key, float]) -> Key:
    """The cell with the highest score (the first run of equal ones)."""
    return max(scores, key=scores.get)


def cell_settings(method: str, key: Key) -> dict[str, float]:
    return {"learning_rate": key[0], knob_of(method)[0]: key[1]}


def sweep_job(config: CompareConfig, method: str, key: Key) -> dict[str, Any]:
    """One cell: the method with this learning rate and knob, first seed, evaluated on the
    validation split."""
    knob = knob_of(method)[0]
    return method_job(
        config,
        method,
        config.seeds[0],
        split="validation",
        overrides=cell_settings(method, key),
        name=f"sweep-{method}-lr{key[0]:g}-{knob}{key[1]:g}",
        paper_eval=False,
    )


def _scores(results: list[dict[str, Any]], method: str) -> dict[Key, float]:
    knob = knob_of(method)[0]
    return {
        (r["job"]["config"]["learning_rate"], r["job"]["config"][knob]): metric(r, "tldr_win_rate")
        for r in results
        if r["job"]["method"] == method
    }


def run_sweep(
    config: CompareConfig, run_jobs: Callable[[list, CompareConfig], list]
) -> dict[str, Any]:
    """Coarse grid, then refinement, for every method; writes and returns the sweep record
    (tuned.json)."""
    methods = sweep_methods(config)
    results = run_jobs(
        [sweep_job(config, m, key) for m in methods for key in coarse_keys(m, config.sweep_size)],
        config,
    )
    refined = [sweep_job(config, m, key) for m in methods
               for key in refine_keys(m, _scores(results, m), config.sweep_refine)]
    results += run_jobs(refined, config) if refined else []
    path = Path(config.output_dir) / "tuned.json"
    record = merge_records(
        json.loads(path.read_text()) if path.is_file() else None, sweep_record(config, results)
    )
    path.write_text(json.dumps(record, indent=2))
    return record


def merge_records(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    """`new` plus the methods only `old` swept (a sweep of some methods keeps the others' choice),
    if both spent the same budget per method; otherwise `new` alone."""
    if old is None or old.get("budget") != new["budget"] or old.get("seed") != new["seed"]:
        return new
    return {
        **new,
        "chosen": {**old["chosen"], **new["chosen"]},
        "cells": {**old["cells"], **new["cells"]},
    }


def sweep_record(config: CompareConfig, results: list[dict[str, Any]]) -> dict[str, Any]:
    """What tuned.json holds: per method its chosen cell and every cell's validation scores, and the
    budget."""
    record: dict[str, Any] = {
        "chosen": {},
        "cells": {},
        "seed": config.seeds[0],
        "budget": {"coarse": config.sweep_size**2, "refine": config.sweep_refine},
    }
    for method in sweep_methods(config):
        knob = knob_of(method)[0]
        mine = [r for r in results if r["job"]["method"] == method]
        record["chosen"][method] = cell_settings(method, best_key(_scores(results, method)))
        record["cells"][method] = [
            {
                "learning_rate": r["job"]["config"]["learning_rate"],
                knob: r["job"]["config"][knob],
                "win_rate": metric(r, "tldr_win_rate"),
                "reward_model": metric(r, "reward_model"),
                "kl": r["evaluation"]["kl"],
                "stage": "coarse" if i < config.sweep_size**2 else "refine",
                "wall_seconds": r["wall_seconds"],
            }
            for i, r in enumerate(mine)
        ]
    return record
