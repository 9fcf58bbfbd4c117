"""`rebel --help`, a subcommand's help and config errors answer in a fresh process before torch,
transformers, datasets or diffusers load; `import rebel_rl` is light and its losses import
lazily."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cli_run import HEAVY  # noqa: F401 (fixtures)


@pytest.mark.parametrize("argv, code", [
    (["--help"], 0),
    (["train", "--help"], 0),
    (["evaluate", "--help"], 0),
    (["train", "--eta", "-1"], 2),
    (["train", "--config", "missing.yaml"], 2),
    (["train", "--model_name_or_path", "./missing"], 2),
    (["sft", "--num_epochs", "0"], 2),
    (["train", "--bogus", "1"], 2),
    (["train", "--dataset", "missing.jsonl"], 2),
    (["train", "--rewards", "no_such_reward", "--dataset", "missing.jsonl"], 2),
])
def test_help_and_config_errors_do_not_import_heavy_libraries(argv, code, tmp_path):
    """In a fresh process: the command answers (exit code as expected) and neither torch nor
    transformers, datasets or diffusers was imported: these answers take a fraction of a second
    (benchmarks/cli_latency.py)."""
    probe = ("import sys\nfrom rebel_rl.cli import main\n"
             f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
             f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], code)")
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"HEAVY [] {code}", (last, result.stderr[-2000:])
    if code == 2:
        assert (
            result.stderr.strip().splitlines()[-1].startswith(("error: ", "usage: ", "rebel"))
        ), result.stderr


def test_import_rebel_rl_is_light():
    probe = (
        "import sys, rebel_rl\nfrom rebel_rl import RebelConfig, SFTConfig, EvaluateConfig, "
        "CompareConfig\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def test_lazy_losses_still_import():
    import rebel_rl

    assert callable(rebel_rl.rebel_loss) and callable(rebel_rl.dpo_loss)
