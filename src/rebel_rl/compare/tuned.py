"""Per-method settings of the comparison and the sweep that chooses them (`rebel compare --sweep
true`, docs/tuning.md).

BASE holds every method's settings before tuning: the knobs the sweep does not touch (epochs,
minibatches) and starting values of the two it does. The sweep tunes, per method, the learning rate
and the method's own knob (KNOBS) on the validation split and writes the chosen cell to `tuned.json`
in its output folder; later grids in that folder read it. The packaged `tuned.json` beside this file
is the committed study's choice, the default of a fresh output folder. Everything else (budget,
reward, KL term, EOS penalty, sampling) is shared and lives in CompareConfig. `minibatches` is the
number of optimizer steps per epoch (the iteration's prompts split evenly).
"""
from __future__ import annotations

import json
from pathlib import Path

from .config import OFFLINE, online_methods

BASE: dict[str, dict] = {
    # pinned, so a saved result is only reused for the same training (library defaults may change)
    "sft_stage": {
        "num_epochs": 6,
        "batch_size": 8,
        "learning_rate": 3e-3,
        "mixed_precision": "no",
        "seed": 0,
    },
    "reward_model_stage": {
        "num_epochs": 2,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "mixed_precision": "no",
        "seed": 0,
    },
    "dpo": {"learning_rate": 1e-4, "beta": 0.1, "num_epochs": 1},
    "iterative_dpo": {"learning_rate": 3e-4, "beta": 0.1, "num_epochs": 1, "minibatches": 2},
    "ppo": {"learning_rate": 1e-4, "clip_range": 0.2, "num_epochs": 2, "minibatches": 2},
    "reinforce": {"learning_rate": 3e-4, "num_epochs": 1, "minibatches": 2},
    "rloo": {"learning_rate": 1e-4, "num_epochs": 1, "minibatches": 2},
    "grpo": {"learning_rate": 1e-4, "num_epochs": 1, "minibatches": 2},
    "rebel": {"learning_rate": 1e-4, "eta": 1.0, "num_epochs": 2, "minibatches": 2},
}

# An axis of the sweep: (its fine values, the full coarse grid's three, the reduced default's two).
# Refinement may add any fine value; neighbouring fine values are about a factor sqrt(3) apart. The
# reduced coarse pair is the hand-picked value before the sweep (BASE) and the next coarse value
# toward a larger update per iteration (higher learning rate, eta or clip range; lower beta; more
# epochs).
LEARNING_RATE = (
    [1e-5, 1.8e-5, 3e-5, 5.5e-5, 1e-4, 1.8e-4, 3e-4, 5.5e-4, 1e-3],
    [3e-5, 1e-4, 3e-4],
    [1e-4, 3e-4],
)
_EPOCHS = ([1, 2, 3, 4, 6, 8], [1, 2, 4], [1, 2])
_BETA = ([0.01, 0.018, 0.03, 0.055, 0.1, 0.18, 0.3, 0.55, 1.0], [0.03, 0.1, 0.3], [0.03, 0.1])
# method -> (its knob, the knob's axis); the sweep is learning rate x knob
KNOBS: dict[str, tuple[str, tuple[list, list, list]]] = {
    "dpo": ("beta", _BETA),
    "iterative_dpo": ("beta", _BETA),
    "ppo": (
        "clip_range",
        ([0.05, 0.07, 0.1, 0.14, 0.2, 0.28, 0.4, 0.57, 0.8], [0.1, 0.2, 0.4], [0.2, 0.4]),
    ),
    "reinforce": ("num_epochs", _EPOCHS),
    "rloo": ("num_epochs", _EPOCHS),
    "grpo": ("num_epochs", _EPOCHS),
    "rebel": (
        "eta",
        ([0.1, 0.18, 0.3, 0.55, 1.0, 1.8, 3.0, 5.5, 10.0], [0.3, 1.0, 3.0], [1.0, 3.0]),
    ),
}

# A registered algorithm with no entry above starts from these and sweeps its epochs, like RLOO.
DEFAULT_SETTINGS: dict = {"learning_rate": 1e-4, "num_epochs": 1, "minibatches": 2}
DEFAULT_KNOB: tuple[str, tuple[list, list, list]] = ("num_epochs", _EPOCHS)


def swept_methods() -> list[str]:
    """The methods the sweep tunes: DPO and every online algorithm (SFT is the shared start)."""
    return [m for m in OFFLINE if m in KNOBS] + online_methods()


def knob_of(method: str) -> tuple[str, tuple[list, list, list]]:
    """(the knob the sweep tunes beside the learning rate, its axis) of `method`."""
    return KNOBS.get(method, DEFAULT_KNOB)


PACKAGED = Path(__file__).with_name("tuned.json")


def read_chosen(path: Path) -> dict[str, dict]:
    """The chosen cells a sweep wrote (method -> {setting: value}); {} if the file is missing."""
    return json.loads(path.read_text())["chosen"] if path.is_file() else {}


def tuned_settings(output_dir: str | Path | None = None) -> dict[str, dict]:
    """BASE with the chosen cells on top: the sweep's of `output_dir` if it ran there, else the
    packaged ones."""
    own = Path(output_dir) / "tuned.json" if output_dir is not None else None
    chosen = read_chosen(own) if own is not None and own.is_file() else read_chosen(PACKAGED)
    names = dict.fromkeys([*BASE, *online_methods()])  # a new algorithm gets DEFAULT_SETTINGS
    return {method: {**BASE.get(method, DEFAULT_SETTINGS), **chosen.get(method, {})}
            for method in names}


TUNED = tuned_settings()
