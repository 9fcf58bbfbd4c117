"""Issue 11: the first minute and the failures around a run. Help and config errors answer before the heavy
libraries load; a corrupt checkpoint, model file or data file is one `error:` line (or a one-line note and a
fallback); a run folder that holds no run never traps the next command; Ctrl-C names the run.

Each test reproduces one case of the issue and fails without its fix. Errors go through `rebel_rl.cli.main`
in this process (as the console script does), except where a fresh process is the point.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rebel_rl.cli import main
from test_cli import assert_one_error_line, run_main
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]
FAST = ["--num_iterations", "2", "--prompts_per_iteration", "4", "--minibatch_prompts", "2", "--num_generations", "2",
        "--max_new_tokens", "4", "--lora_r", "4", "--eval_prompts", "0", "--progress", "false",
        "--tensorboard", "false"]
HEAVY = ("torch", "transformers", "datasets", "diffusers", "accelerate", "peft")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny model and a prompt file, built once for the module."""
    root = tmp_path_factory.mktemp("reliability")
    return {
        "model": str(save_tiny_causal_lm(root / "tiny")),
        "prompts": write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS]),
        "root": root,
    }


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def train_args(files, run_dir: Path, *extra: str) -> list[str]:
    return ["train", "--model_name_or_path", files["model"], "--dataset", files["prompts"], "--rewards", "length",
            *FAST, "--output_dir", str(run_dir), *extra]


# ------------------------------------------------------------------ item 10: help and config errors stay light
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
    """In a fresh process: the command answers (exit code as expected) and neither torch nor transformers,
    datasets or diffusers was imported: these answers take a fraction of a second (benchmarks/cli_latency.py)."""
    probe = ("import sys\nfrom rebel_rl.cli import main\n"
             f"try:\n    code = main({argv!r})\nexcept SystemExit as exc:\n    code = exc.code\n"
             f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules], code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=120)
    last = result.stdout.strip().splitlines()[-1]
    assert last == f"HEAVY [] {code}", (last, result.stderr[-2000:])
    if code == 2:
        assert result.stderr.strip().splitlines()[-1].startswith(("error: ", "usage: ", "rebel")), result.stderr


def test_import_rebel_rl_is_light():
    probe = ("import sys, rebel_rl\nfrom rebel_rl import RebelConfig, SFTConfig, EvaluateConfig, CompareConfig\n"
             f"print([m for m in {HEAVY!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr[-2000:]


def test_lazy_losses_still_import():
    import rebel_rl

    assert callable(rebel_rl.rebel_loss) and callable(rebel_rl.dpo_loss)


# ------------------------------------------------------------------ item 7: Ctrl-C names the run
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


# ------------------------------------------------------------------ item 1: a corrupt latest checkpoint
@pytest.fixture(scope="module")
def saved_run(files):
    """Two iterations with a checkpoint after each (iter-000001, iter-000002), run once for the module."""
    run_dir = files["root"] / "saved"
    assert main(train_args(files, run_dir, "--save_every", "1", "--lr_scheduler", "constant")) == 0
    return run_dir


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def copy_run(saved_run: Path, tmp_path: Path) -> Path:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(saved_run, copy)
    shutil.rmtree(copy / "final")
    return copy


@pytest.mark.parametrize("broken, reason", [("adapter_model.safetensors", "SafetensorError"),
                                             ("trainer_state.pt", "trainer_state.pt is unreadable")])
def test_resume_skips_a_corrupt_latest_checkpoint(broken, reason, saved_run, tmp_path, capfd):
    run_dir = copy_run(saved_run, tmp_path)
    truncate(run_dir / "checkpoints" / "iter-000002" / broken)
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--progress", "false")
    assert code == 0, err
    notes = [line for line in err.strip().splitlines() if line]
    assert len(notes) == 1 and notes[0].startswith("note: skipping checkpoint") and "iter-000002" in notes[0], err
    assert reason in notes[0], notes[0]
    metrics = [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
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


# ------------------------------------------------------------------ item 9: the schedule on resume
def test_resume_refuses_a_changed_learning_rate_schedule_unless_asked(files, tmp_path, capfd):
    run_dir = tmp_path / "run"
    assert main(train_args(files, run_dir, "--save_every", "1", "--warmup_ratio", "0", "--learning_rate", "3e-4")) == 0
    config_before = (run_dir / "config.yaml").read_bytes()
    last_lr = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])["learning_rate"]
    assert last_lr == 0.0
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--num_iterations", "4")
    assert_one_error_line(code, err, "change the learning-rate schedule", "--new_lr_schedule", "rate is 0")
    assert (run_dir / "config.yaml").read_bytes() == config_before  # the refused resume changed nothing

    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--num_iterations", "4", "--new_lr_schedule")
    assert code == 0, err
    rates = [json.loads(line)["learning_rate"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # 2 optimizer steps per iteration; linear over 8 steps: after steps 6 and 8 the rate is 2/8 and 0 of 3e-4.
    assert rates[:2] == [pytest.approx(3e-4 * 2 / 4), 0.0]
    assert rates[2:] == [pytest.approx(3e-4 * 2 / 8), pytest.approx(0.0)]


def test_new_lr_schedule_needs_resume(files, tmp_path, capfd):
    code, _, err = run_main(capfd, *train_args(files, tmp_path / "run", "--new_lr_schedule"))
    assert_one_error_line(code, err, "--new_lr_schedule goes with --resume")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ item 3: output_dir under a file
def test_output_dir_under_a_file(files, tmp_path, capfd):
    (tmp_path / "afile").write_text("x")
    code, _, err = run_main(capfd, *train_args(files, tmp_path / "afile" / "run"))
    assert_one_error_line(code, err, "output_dir", "which is a file", "choose a folder")
    assert (tmp_path / "afile").read_text() == "x"


# ------------------------------------------------------------------ item 6: the start-up trap
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
    code, _, err = run_main(capfd, *base, "--eval_prompts", "2")  # the reward fails on the "before" evaluation
    assert_one_error_line(code, err, "first_call_fails", "not ready")
    assert (run_dir / "config.yaml").is_file()  # the failed start left its config behind

    # --resume on it starts from the beginning, with a note
    code, _, err = run_main(capfd, "train", "--resume", str(run_dir), "--rewards", f"{rewards}:fine",
                            "--eval_prompts", "0", "--num_iterations", "1")
    assert code == 0, err
    assert err.strip().splitlines() == [f"note: {run_dir} has no checkpoint and no completed iteration: "
                                        "starting the run from the beginning"]
    assert [json.loads(line)["iteration"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1]

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
    assert not (other / "eval_before.json").exists()  # the failed start's files are gone, the new run's are in
    assert (other / "notes.txt").read_text() == "mine"
    assert [json.loads(line)["iteration"] for line in (other / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    # once it holds a run, the protection is back
    code, _, err = run_main(capfd, *base)
    assert_one_error_line(code, err, "already holds a run", "--overwrite")


# ------------------------------------------------------------------ item 2: a truncated weights file, at every loader
def truncated_copy(folder: str, tmp_path: Path, weights: str) -> str:
    import shutil

    copy = tmp_path / "truncated"
    shutil.copytree(folder, copy)
    truncate(copy / weights)
    return str(copy)


def test_truncated_policy_weights_are_one_line(files, tmp_path, capfd):
    model = truncated_copy(files["model"], tmp_path, "model.safetensors")
    args = train_args(files, tmp_path / "run")
    args[args.index(files["model"])] = model
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, f"cannot load model '{model}'", "incomplete metadata")


def test_truncated_value_model_is_one_line(files, tmp_path, capfd):
    value = truncated_copy(files["model"], tmp_path, "model.safetensors")
    code, _, err = run_main(capfd, *train_args(files, tmp_path / "run", "--algorithm", "ppo", "--value_model", value))
    assert_one_error_line(code, err, f"cannot load value model '{value}'")


def test_truncated_reward_model_is_one_line(files, tmp_path, capfd):
    from tiny import save_tiny_reward_model

    reward = truncated_copy(str(save_tiny_reward_model(tmp_path / "rm")), tmp_path, "model.safetensors")
    args = train_args(files, tmp_path / "run")
    args[args.index("length")] = f"model:{reward}"
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, "cannot load reward model", "SafetensorError")


def test_truncated_denoiser_is_one_line(tmp_path, capfd):
    from test_images import save_tiny_denoiser

    denoiser = truncated_copy(str(save_tiny_denoiser(tmp_path / "unet")), tmp_path, "diffusion_pytorch_model.safetensors")
    code, _, err = run_main(capfd, "train-images", "--model_name_or_path", denoiser, "--output_dir",
                            str(tmp_path / "run"), "--num_iterations", "1", "--progress", "false")
    assert_one_error_line(code, err, "cannot load the denoiser")


def test_truncated_diffusion_pipeline_is_one_line(tmp_path, capfd):
    from tiny_diffusion import save_tiny_pipeline

    pipeline = save_tiny_pipeline(tmp_path / "pipe")
    truncate(pipeline / "unet" / "diffusion_pytorch_model.safetensors")
    code, _, err = run_main(capfd, "train-images", "--model_name_or_path", str(pipeline), "--output_dir",
                            str(tmp_path / "run"), "--num_iterations", "1", "--progress", "false",
                            "--dataset", "builtin:animals", "--rewards", "jpeg_compressibility", "--reward_weights", "1")
    assert_one_error_line(code, err, "cannot load diffusion checkpoint")


# ------------------------------------------------------------------ items 2 and 8: `rebel evaluate`
def evaluate_args(model: str, files) -> list[str]:
    return ["evaluate", "--model_name_or_path", model, "--dataset", files["prompts"], "--split", "train",
            "--rewards", "length", "--eval_rewards", "length", "--num_prompts", "2", "--max_new_tokens", "4"]


def test_evaluate_takes_the_lora_adapter_rebel_train_writes(saved_run, files, capfd):
    adapter = saved_run / "final"
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "config.json").exists()
    code, out, err = run_main(capfd, *evaluate_args(str(adapter), files))
    assert code == 0, err
    assert out.startswith("reward: ") and "kl: " in out


def test_evaluate_with_a_truncated_adapter_is_one_line(saved_run, files, tmp_path, capfd):
    adapter = truncated_copy(str(saved_run / "final"), tmp_path, "adapter_model.safetensors")
    code, _, err = run_main(capfd, *evaluate_args(adapter, files))
    assert_one_error_line(code, err, f"cannot load '{adapter}'")


# ------------------------------------------------------------------ item 4: empty and malformed data files
@pytest.mark.parametrize("name, text, fragments", [
    ("empty.jsonl", "", ["dataset file empty.jsonl has no rows"]),
    ("blank.jsonl", "\n\n", ["dataset file blank.jsonl has no rows"]),
    ("torn.jsonl", '{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n',
     ["dataset file torn.jsonl line 2 is not valid JSON", "fix or remove that line"]),
    ("list.jsonl", '{"prompt": "a"}\n[1, 2]\n', ["dataset file list.jsonl line 2 is not a JSON object"]),
    ("empty.csv", "", ["dataset file empty.csv has no rows"]),
])
def test_empty_or_malformed_data_file_is_one_line(name, text, fragments, files, tmp_path, capfd):
    data = tmp_path / name
    data.write_text(text)
    args = train_args(files, tmp_path / "run")
    args[args.index(files["prompts"])] = str(data)
    code, _, err = run_main(capfd, *args)
    line = assert_one_error_line(code, err, *fragments)
    assert "StopIteration" not in line
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------ item 5: hub ids while offline
@pytest.mark.parametrize("option, value, fragments", [
    ("--dataset", "someorg/no-such-dataset", ["cannot load dataset 'someorg/no-such-dataset'", "HF_HUB_OFFLINE"]),
    ("--model_name_or_path", "someorg/no-such-model", ["cannot load model 'someorg/no-such-model'", "HF_HUB_OFFLINE"]),
])
def test_hub_id_while_offline_fails_at_once_in_one_line(option, value, fragments, files, tmp_path, capfd,
                                                        monkeypatch):
    from rebel_rl import hub

    monkeypatch.setattr(hub, "_probe", [])  # no earlier probe's result: HF_HUB_OFFLINE is the reason
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: the id cannot be there
    args = train_args(files, tmp_path / "run")
    args[args.index(option) + 1] = value
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, *fragments, "local cache")
    assert "Retrying" not in err and not (tmp_path / "run").exists()


def test_diffusion_hub_id_while_offline_is_one_line(tmp_path, capfd, monkeypatch):
    from rebel_rl import hub

    monkeypatch.setattr(hub, "_probe", [])
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    code, _, err = run_main(capfd, "train-images", "--model_name_or_path", "someorg/no-such-pipeline",
                            "--model_type", "diffusion", "--output_dir", str(tmp_path / "run"))
    assert_one_error_line(code, err, "cannot load model 'someorg/no-such-pipeline'", "HF_HUB_OFFLINE")
    assert not (tmp_path / "run").exists()


def test_no_network_is_found_once_and_switches_the_libraries_offline(monkeypatch, tmp_path):
    from rebel_rl import hub

    calls = []

    def no_network(*args, **kwargs):
        calls.append(args)
        raise OSError("Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(hub, "_probe", [])
    monkeypatch.setattr(hub.socket, "create_connection", no_network)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    import datasets.config

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setattr(datasets.config, name, getattr(datasets.config, name))  # restored afterwards
    from rebel_rl.errors import ModelError

    for _ in range(2):
        with pytest.raises(ModelError, match="no network"):
            hub.check_hub_id("someorg/model", "model", ModelError, "give a folder")
    assert len(calls) == 1  # probed once
    assert os.environ["HF_HUB_OFFLINE"] == "1" and huggingface_hub.constants.HF_HUB_OFFLINE is True
    (tmp_path / "hf" / "hub" / "models--someorg--model").mkdir(parents=True)
    hub.check_hub_id("someorg/model", "model", ModelError, "give a folder")  # cached: the library loads it offline


# ------------------------------------------------------------------ item 11: completions.jsonl and the plot
def test_completions_keep_conversational_prompts_as_messages(files, tmp_path, capfd):
    chat = write_jsonl(tmp_path / "chat.jsonl", [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    args = train_args(files, tmp_path / "run", "--num_iterations", "1")
    args[args.index(files["prompts"])] = chat
    code, _, err = run_main(capfd, *args)
    assert code == 0, err
    records = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert records and all(isinstance(r["prompt"], list) and r["prompt"][0]["role"] == "user" for r in records)
    assert {r["prompt"][0]["content"] for r in records} <= set(PROMPTS)


def test_reward_kl_plot_has_whole_iteration_ticks(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from rebel_rl.evaluation.report import plot_reward_kl

    figures, close = [], plt.close
    monkeypatch.setattr(plt, "close", figures.append)
    metrics = [{"iteration": i, "reward": 0.1 * i, "reward_std": 0.01, "kl": 0.01 * i} for i in (1, 2)]
    plot_reward_kl(metrics, tmp_path / "reward_kl.png")
    (figure,) = figures
    for ax in figure.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
    close(figure)
