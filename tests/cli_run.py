"""Shared pieces of the CLI tests that train a tiny model: the prompts, fast training options,
the module-scoped tiny model and prompt file, a finished two-iteration run with checkpoints, and
helpers that truncate a file or copy a run."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rebel_rl.cli import main
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = [
    "the movie was",
    "tell me about your weekend",
    "i feel",
    "write one sentence about the sea",
]
FAST = [
    "--num_iterations",
    "2",
    "--prompts_per_iteration",
    "4",
    "--minibatch_prompts",
    "2",
    "--num_generations",
    "2",
    "--max_new_tokens",
    "4",
    "--lora_r",
    "4",
    "--eval_prompts",
    "0",
    "--progress",
    "false",
    "--tensorboard",
    "false",
]
HEAVY = ("torch", "transformers", "datasets", "diffusers", "accelerate", "peft")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model and a prompt file, built once for the module."""
    root = tmp_path_factory.mktemp("cli_run")
    return {
        "model": str(save_tiny_causal_lm(root / "tiny")),
        "prompts": write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS]),
        "root": root,
    }


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def train_args(files, run_dir: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model_name_or_path",
        files["model"],
        "--dataset",
        files["prompts"],
        "--rewards",
        "length",
        *FAST,
        "--output_dir",
        str(run_dir),
        *extra,
    ]


@pytest.fixture(scope="module")
def saved_run(files):
    """Two iterations with a checkpoint after each (iter-000001, iter-000002), run once for the
    module."""
    run_dir = files["root"] / "saved"
    assert main(train_args(files, run_dir, "--save_every", "1", "--lr_scheduler", "constant")) == 0
    return run_dir


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def copy_run(saved_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    shutil.rmtree(copy / "final")
    return copy


def truncated_copy(folder: str, tmp_path: Path, weights: str) -> str:
    copy = tmp_path / "truncated"
    shutil.copytree(folder, copy)
    truncate(copy / weights)
    return str(copy)
