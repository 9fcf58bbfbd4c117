"""A run interrupted or broken part-way: Ctrl-C names the run to resume, a corrupt latest checkpoint
is skipped with a note, a changed learning-rate schedule is refused on resume, an output_dir under
a file is one error line, and a failed start never traps the corrected command."""
from __future__ import annotations

import json

import pytest

from rebel_rl.cli import main
from cli_run import (
    copy_run,
    files,
    in_tmp_dir,
    saved_run,
    train_args,
    truncate,
)  # noqa: F401 (fixtures)
from test_cli import assert_one_error_line, run_main


def test_ctrl_c_names_the_run_directory(files, tmp_path, capfd, monkeypatch):
    class Interrupted:
        def __init__(self, config, **kwargs):
            pass

        def train(self):
            raise KeyboardInterrupt

    monkeypatch.setattr("rebel_rl.training.online.loop.RebelTrainer", Interrupted)
    run_dir = tmp_path / "run"
    code, _, err = run_main(capfd, *train_args(files, run_dir))
    assert code == 130
    assert "RUN_DIR" not in err and f"--resume {run_dir}" in err, err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "broken, reason",
    [
        ("adapter_model.safetensors", "SafetensorError"),
        ("trainer_state.pt", "trainer_state.pt is unreadable"),
    ],
)
def test_resume_skips_a_corrupt_latest_checkpoint(broken, reason, saved_run, tmp_path, capfd):
    run_dir = copy_run(saved_run, tmp_path)
    truncate(run_dir / "checkpoints" / "iter-000002" / broken)
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--progress", "false")
    assert code == 0, err
    notes = [line for line in err.strip().splitlines() if line]
    assert (
        len(notes) == 1
        and notes[0].startswith("note: skipping checkpoint")
        and "iter-000002" in notes[0]
    ), err
    assert reason in notes[0], notes[0]
    metrics = [
        json.loads(line)["iteration"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    assert metrics == [1, 2]  # iteration 2 redone from iter-000001, its old line replaced
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()


def test_resume_with_no_loadable_checkpoint_is_one_line(saved_run, tmp_path, capfd):
    run_dir = copy_run(saved_run, tmp_path)
    for name in ("iter-000001", "iter-000002"):
        truncate(run_dir / "checkpoints" / name / "trainer_state.pt")
    before = (run_dir / "metrics.jsonl").read_bytes()
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir))
    assert_one_error_line(code, err, "no checkpoint of", "loads", "iter-000002", "iter-000001")
    assert (run_dir / "metrics.jsonl").read_bytes() == before


# ------------------------------------------------------------------ the schedule on resume
def test_resume_refuses_a_changed_learning_rate_schedule_unless_asked(files, tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert (
        main(
            train_args(
                files,
                run_dir,
                "--save_every",
                "1",
                "--warmup_ratio",
                "0",
                "--learning_rate",
                "3e-4",
            )
        )
        == 0
    )
    config_before = (run_dir / "config.yaml").read_bytes()
    last_lr = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["learning_rate"]
    assert last_lr == 0.0
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--num_iterations", "4")
    assert_one_error_line(
        code, err, "change the learning-rate schedule", "--new_lr_schedule", "rate is 0"
    )
    # the refused resume changed nothing
    assert (run_dir / "config.yaml").read_bytes() == config_before

    code, _, err = run_main(
        capfd, "train", "--resume", str(run_dir), "--num_iterations", "4", "--new_lr_schedule"
    )
    assert code == 0, err
    rates = [
        json.loads(line)["learning_rate"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ]
    # 2 optimizer steps per iteration; linear over 8 steps: after steps 6 and 8 the rate is 2/8 and
    # 0 of 3e-4.
    assert rates[:2] == [pytest.approx(3e-4 * 2 / 4), 0.0]
    assert rates[2:] == [pytest.approx(3e-4 * 2 / 8), pytest.approx(0.0)]


def test_new_lr_schedule_needs_resume(files, tmp_path, capfd):
    code, _, err = run_main(capfd, *train_args(files, tmp_path / "run", "--new_lr_schedule"))
    assert_one_error_line(code, err, "--new_lr_schedule goes with --resume")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ output_dir under a file
def test_output_dir_under_a_file(files, tmp_path, capfd):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_main(capfd, *train_args(files, tmp_path / "afile" / "run"))
    assert_one_error_line(code, err, "output_dir", "which is a file", "choose a folder")
    assert (tmp_path / "afile").read_text() == "x"


# ------------------------------------------------------------------ the start-up trap
REWARD_FIRST_CALL_FAILS = '''
def first_call_fails(prompts, completions, **kwargs):
    raise RuntimeError("not ready")


def fine(prompts, completions, **kwargs):
    return [float(len(c)) for c in completions]
'''


def test_a_failed_start_does_not_trap_the_corrected_command(files, tmp_path, capfd):
    rewards = tmp_path / "rewards.py"
    rewards.write_text(REWARD_FIRST_CALL_FAILS)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "notes.txt").write_text("mine")
    base = train_args(files, run_dir)
    base[base.index("length")] = f"{rewards}:first_call_fails"
    # the reward fails on the "before" evaluation
    code, _, err = run_main(capfd, *base, "--eval_prompts", "2")
    assert_one_error_line(code, err, "first_call_fails", "not ready")
    assert (run_dir / "config.yaml").is_file()  # the failed start left its config behind

    # --resume on it starts from the beginning, with a note
    code, _, err = run_main(
        capfd,
        "train",
        "--resume",
        str(run_dir),
        "--rewards",
        f"{rewards}:fine",
        "--eval_prompts",
        "0",
        "--num_iterations",
        "1",
    )
    assert code == 0, err
    assert err.strip().splitlines() == [
        f"note: {run_dir} has no checkpoint and no completed iteration: "
        "starting the run from the beginning"
    ]
    assert [
        json.loads(line)["iteration"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
    ] == [1]

    # a second folder: the corrected command reuses it without --overwrite, keeping the user's file
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    base = train_args(files, other)
    base[base.index("length")] = f"{rewards}:first_call_fails"
    code, _, err = run_main(capfd, *base, "--eval_prompts", "2")
    assert code == 2
    base[base.index(f"{rewards}:first_call_fails")] = f"{rewards}:fine"
    code, _, err = run_main(capfd, *base)
    assert code == 0, err
    assert "note: reusing" in err and "config.yaml" in err
    # the failed start's files are gone, the new run's are in
    assert not (other / "eval_before.json").exists()
    assert (other / "notes.txt").read_text() == "mine"
    assert [
        json.loads(line)["iteration"] for line in (other / "metrics.jsonl").read_text().splitlines()
    ] == [1, 2]
    # once it holds a run, the protection is back
    code, _, err = run_main(capfd, *base)
    assert_one_error_line(code, err, "already holds a run", "--overwrite")
