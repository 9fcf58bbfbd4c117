"""The `rebel` command: one `error:` line and exit code 2 for every bad input, and a complete run directory.

A few cases run the real command in a subprocess (console script, fast failure, the full successful run).
The other error cases call `rebel_rl.cli.main(argv)` in this process, which is what the console script runs
(`sys.exit(main())`), with file-descriptor capture: each subprocess would spend seconds importing torch.
"""
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rebel_rl import RebelConfig
from rebel_rl.cli import main
from rebel_rl.training.run.checkpoint import STATE_FILE, list_checkpoints
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]
FAST = ["--num_iterations", "2", "--prompts_per_iteration", "4", "--minibatch_prompts", "2", "--num_generations", "2",
        "--max_new_tokens", "4", "--lora_r", "4", "--eval_prompts", "0", "--progress", "false",
        "--tensorboard", "false"]
REWARD_FILE = '''
CALLS = 0


def raises(prompts, completions, **kwargs):
    raise ValueError("bad reward input\\nsecond line of the message")


def wrong_length(prompts, completions, **kwargs):
    return [1.0] * (len(completions) + 1)


def nan(prompts, completions, **kwargs):
    return [float("nan")] * len(completions)


def fails_second_call(prompts, completions, **kwargs):
    global CALLS
    CALLS += 1
    if CALLS == 2:
        raise RuntimeError("second call fails")
    return [0.5] * len(completions)
'''
METRIC_KEYS = {"reward", "reward_std", "kl", "loss", "completions/mean_length", "completions/no_eos_fraction",
               "time/sampling", "time/scoring", "time/logprobs", "time/update", "tokens_per_second", "rewards/length"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The tiny model, datasets and reward file shared by every test here (built once)."""
    root = tmp_path_factory.mktemp("cli")
    return {
        "model": str(save_tiny_causal_lm(root / "tiny")),
        "prompts": str(write_jsonl(root / "prompts.jsonl", [{"prompt": p} for p in PROMPTS])),
        "no_prompt": str(write_jsonl(root / "text.jsonl", [{"text": p} for p in PROMPTS])),
        "long": str(write_jsonl(root / "long.jsonl", [{"prompt": "the movie was great and i loved it " * 40}] * 4)),
        "rewards": str(_write(root / "my_rewards.py", REWARD_FILE)),
        "root": root,
    }


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    """A default output_dir (runs/...) would land in the working directory: keep it in tmp_path."""
    monkeypatch.chdir(tmp_path)


def cli_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def run_subprocess(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rebel_rl.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=cli_env(), timeout=timeout)


def run_main(capfd, *args: str) -> tuple[int, str, str]:
    """`rebel ARGS` in this process: (exit code, stdout, stderr)."""
    capfd.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse
        code = exc.code
    out, err = capfd.readouterr()
    return code, out, err


def assert_one_error_line(code: int, err: str, *fragments: str) -> str:
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ the real command
def test_console_script_help():
    script = Path(sys.executable).parent / "rebel"
    assert script.is_file(), f"no `rebel` console script next to {sys.executable}"
    result = subprocess.run([str(script), "train", "--help"], capture_output=True, text=True, env=cli_env(),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ["--config", "--resume", "--num_iterations", "--rewards", "--kl_coef", "--overwrite"]:
        assert option in result.stdout
    # Every option of every group, the algorithms' own groups included, is on the command line.
    from rebel_rl.config import config_fields

    assert [f.name for f in config_fields() if f"--{f.name} " not in result.stdout] == []


def test_config_errors_fail_fast_in_a_real_process(tmp_path, files):
    """A bad reward spec and a missing dataset: one line, exit 2, quickly, and no run directory."""
    run_dir = tmp_path / "never"
    start = time.perf_counter()
    result = run_subprocess("train", "--model_name_or_path", files["model"], "--rewards", "no_such_reward",
                            "--dataset", str(tmp_path / "missing.jsonl"), "--output_dir", str(run_dir), cwd=tmp_path)
    elapsed = time.perf_counter() - start
    assert_one_error_line(result.returncode, result.stderr, "unknown reward 'no_such_reward'")
    assert not run_dir.exists() and not (tmp_path / "runs").exists()
    assert elapsed < 30, f"a config error took {elapsed:.1f}s (imports only should take a few seconds)"


# ------------------------------------------------------------------ errors before any model loads
@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if the trainer gets as far as loading a model."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the config error was reported")

    monkeypatch.setattr("rebel_rl.training.online.setup.load_policy", refuse)


def config_error_cases(files, tmp):
    bad_yaml = _write(tmp / "bad.yaml", "num_iterations: 3\nrewards: [length\n")
    unknown_key = _write(tmp / "unknown.yaml", "num_iterations: 3\nlearning_rte: 0.1\n")
    no_config = tmp / "folder_without_config.json"
    no_config.mkdir()
    has_config = tmp / "started"
    has_config.mkdir()
    RebelConfig(model_name_or_path=files["model"], dataset=files["prompts"]).save_yaml(has_config / "config.yaml")
    (has_config / "metrics.jsonl").write_text('{"iteration": 1, "reward": 0.5}\n')  # ran, but saved no checkpoint
    model = ["--model_name_or_path", files["model"]]
    data = ["--dataset", files["prompts"]]
    return {
        "missing config file": (["--config", str(tmp / "nope.yaml")], ["config file not found", "nope.yaml"]),
        "malformed yaml": (["--config", str(bad_yaml)], ["not valid YAML", "line "]),
        "unknown key in yaml": (["--config", str(unknown_key)], ["unknown config key 'learning_rte'"]),
        "bad value": ([*model, *data, "--num_iterations", "abc"], ["num_iterations", "must be int", "'abc'"]),
        "invalid combination": ([*model, *data, "--prompts_per_iteration", "5", "--minibatch_prompts", "2"],
                                ["must be a multiple of minibatch_prompts"]),
        "missing dataset": ([*model, "--dataset", str(tmp / "missing.jsonl"), "--rewards", "length"],
                            ["dataset file not found", "missing.jsonl"]),
        "no prompt column": ([*model, "--dataset", files["no_prompt"], "--rewards", "length"],
                             ["has no column 'prompt'", "columns: text", "--prompt_column"]),
        "missing reward file": ([*model, *data, "--rewards", str(tmp / "gone.py") + ":fn"],
                                ["reward file not found", "gone.py"]),
        "reward not in file": ([*model, *data, "--rewards", files["rewards"] + ":nope"],
                               ["reward function 'nope' not found"]),
        "bad reward and missing dataset": ([*model, "--rewards", "no_such_reward", "--dataset",
                                            str(tmp / "missing.jsonl")], ["unknown reward 'no_such_reward'"]),
        "missing model path": (["--model_name_or_path", str(tmp / "no_model"), *data, "--rewards", "length"],
                               ["model path does not exist", "no_model"]),
        "model folder without config": (["--model_name_or_path", str(no_config), *data, "--rewards", "length"],
                                        ["has no config.json"]),
        "resume without a run": (["--resume", str(tmp)], ["nothing to resume", "config.yaml"]),
        "resume without checkpoints": (["--resume", str(has_config)], ["no checkpoint to resume", "--overwrite"]),
        "resume with config": (["--resume", str(has_config), "--config", str(unknown_key)], ["drop --config"]),
    }


CONFIG_ERROR_NAMES = ["missing config file", "malformed yaml", "unknown key in yaml", "bad value",
                      "invalid combination", "missing dataset", "no prompt column", "missing reward file",
                      "reward not in file", "bad reward and missing dataset", "missing model path",
                      "model folder without config", "resume without a run", "resume without checkpoints",
                      "resume with config"]


@pytest.mark.parametrize("case", CONFIG_ERROR_NAMES)
def test_config_errors_are_one_line_before_any_model_loads(case, files, tmp_path, capfd, no_model_loading):
    args, fragments = config_error_cases(files, tmp_path)[case]
    out_dir = tmp_path / "out"
    start = time.perf_counter()
    code, _, err = run_main(capfd, "train", *args, "--output_dir", str(out_dir)) if "--resume" not in args \
        else run_main(capfd, "train", *args)
    elapsed = time.perf_counter() - start
    assert_one_error_line(code, err, *fragments)
    assert not out_dir.exists() and not (tmp_path / "runs").exists()
    assert elapsed < 10, f"{case}: {elapsed:.1f}s"


def test_unknown_option_is_an_argparse_error(capfd):
    code, _, err = run_main(capfd, "train", "--bogus_field", "1")
    assert code == 2 and "Traceback" not in err
    assert "--bogus_field" in err.strip().splitlines()[-1]


def test_no_command_is_an_argparse_error(capfd):
    code, _, err = run_main(capfd)
    assert code == 2 and "Traceback" not in err and "command" in err.lower()


# ------------------------------------------------------------------ errors during training
@pytest.mark.parametrize("spec, fragments", [
    ("raises", ["reward 'raises' raised ValueError: bad reward input"]),
    ("wrong_length", ["reward 'wrong_length' returned 9 values for 8 completions"]),
    ("nan", ["reward 'nan' returned nan at index 0", "finite"]),
])
def test_misbehaving_rewards_are_one_line(spec, fragments, files, tmp_path, capfd):
    code, _, err = run_main(capfd, "train", "--model_name_or_path", files["model"], "--dataset", files["prompts"],
                            "--rewards", f"{files['rewards']}:{spec}", *FAST, "--output_dir", str(tmp_path / "run"))
    assert_one_error_line(code, err, *fragments)


def test_prompt_longer_than_context_window(files, tmp_path, capfd):
    code, _, err = run_main(capfd, "train", "--model_name_or_path", files["model"], "--dataset", files["long"],
                            "--rewards", "length", *FAST, "--output_dir", str(tmp_path / "run"))
    assert_one_error_line(code, err, "tokens, more than the 124 allowed", "context window 128")


def test_reward_error_mid_run_keeps_written_files_intact(files, tmp_path, capfd):
    run_dir = tmp_path / "run"
    code, _, err = run_main(capfd, "train", "--model_name_or_path", files["model"], "--dataset", files["prompts"],
                            "--rewards", f"{files['rewards']}:fails_second_call", *FAST, "--num_iterations", "3",
                            "--save_every", "1", "--output_dir", str(run_dir))
    assert_one_error_line(code, err, "reward 'fails_second_call' raised RuntimeError: second call fails")
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["iteration"] for line in lines] == [1]
    config = RebelConfig.from_yaml(run_dir / "config.yaml")
    assert config.num_iterations == 3 and config.output_dir == str(run_dir)
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["iter-000001"]
    assert (checkpoints[0] / STATE_FILE).is_file() and (checkpoints[0] / "adapter_model.safetensors").is_file()
    assert not list((run_dir / "checkpoints").glob(".tmp-*"))


# ------------------------------------------------------------------ a successful run
@pytest.fixture(scope="module")
def finished_run(files):
    run_dir = files["root"] / "run"
    args = ["train", "--model_name_or_path", files["model"], "--dataset", files["prompts"], "--rewards", "length",
            "--num_iterations", "2", "--prompts_per_iteration", "4", "--minibatch_prompts", "2", "--num_generations", "2",
            "--max_new_tokens", "4", "--lora_r", "4", "--eval_prompts", "2", "--save_every", "1",
            "--output_dir", str(run_dir)]
    result = run_subprocess(*args, cwd=files["root"])
    return run_dir, args, result


def test_successful_run_writes_everything(finished_run):
    run_dir, _, result = finished_run
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == "", f"library noise on stderr: {result.stderr[:500]}"

    config = RebelConfig.from_yaml(run_dir / "config.yaml")
    assert config.num_iterations == 2 and config.rewards == ["length"] and config.output_dir == str(run_dir)

    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["iteration"] for m in metrics] == [1, 2]
    for m in metrics:
        assert METRIC_KEYS <= set(m), METRIC_KEYS - set(m)
        assert m["reward_queries"] == 8 * m["iteration"]
    completions = [json.loads(line) for line in (run_dir / "completions.jsonl").read_text().splitlines()]
    assert {c["iteration"] for c in completions} == {1, 2}
    assert all({"prompt", "completion", "reward"} <= set(c) for c in completions)

    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    checkpoints = list_checkpoints(run_dir / "checkpoints")
    assert [p.name for p in checkpoints] == ["iter-000001", "iter-000002"]
    assert (run_dir / "final" / "adapter_model.safetensors").is_file()
    assert (run_dir / "final" / "adapter_config.json").is_file()

    evaluation = json.loads((run_dir / "eval.json").read_text())
    assert set(evaluation) == {"before", "after"}
    assert len(evaluation["before"]["per_prompt_reward"]) == 2
    assert "| before (pi_ref) |" in (run_dir / "eval.md").read_text()
    assert (run_dir / "reward_kl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run_dir / "reward_kl.png").stat().st_size > 1000


def test_rerun_without_overwrite_changes_nothing(finished_run, capfd):
    run_dir, args, first = finished_run
    assert first.returncode == 0
    kept = {name: (run_dir / name).read_bytes() for name in ["metrics.jsonl", "config.yaml", "completions.jsonl"]}
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, "already holds a run", "--overwrite", "--resume")
    assert {name: (run_dir / name).read_bytes() for name in kept} == kept


def test_overwrite_replaces_the_run(finished_run, tmp_path, capfd):
    run_dir, args, first = finished_run
    assert first.returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "notes.txt").write_text("mine")
    args = [*args[:-1], str(copy), "--overwrite", "--num_iterations", "1", "--eval_prompts", "3",
            "--tensorboard", "false", "--progress", "false"]
    code, _, err = run_main(capfd, *args)
    assert code == 0, err
    assert [json.loads(line)["iteration"] for line in (copy / "metrics.jsonl").read_text().splitlines()] == [1]
    assert [p.name for p in list_checkpoints(copy / "checkpoints")] == ["iter-000001"]
    assert yaml.safe_load((copy / "config.yaml").read_text())["training"]["num_iterations"] == 1
    assert not (copy / "tensorboard").exists()
    # The held-out "before" numbers belong to the new run, not the replaced one.
    evaluation = json.loads((copy / "eval.json").read_text())
    assert len(evaluation["before"]["per_prompt_reward"]) == 3
    assert (copy / "notes.txt").read_text() == "mine"  # files that are not run artifacts are kept


def test_resume_from_the_command_line(finished_run, tmp_path, capfd):
    run_dir, _, first = finished_run
    assert first.returncode == 0
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    code, _, err = run_main(capfd, "train", "--resume", str(copy), "--num_iterations", "3", "--progress", "false",
                            "--new_lr_schedule")
    assert code == 0, err
    assert [json.loads(line)["iteration"] for line in (copy / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert list_checkpoints(copy / "checkpoints")[-1].name == "iter-000003"
