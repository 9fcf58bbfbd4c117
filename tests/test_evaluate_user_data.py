"""`rebel evaluate` on the user's own model and data (issue 24, item 8): the TL;DR judge and win
rate are defaults only on builtin:tldr; `--eval_rewards none` works; a reward needing columns the
data lacks names the flag to change. Runs through `rebel_rl.cli.main`, as the console script does.
"""
from __future__ import annotations

import json

import pytest

from rebel_rl.errors import ConfigError
from rebel_rl.evaluation.model_eval import EvaluateConfig
from test_cli import assert_one_error_line, run_main
from cli_run import files, in_tmp_dir, train_args  # noqa: F401 (fixtures)
from rebel_rl.cli import main


@pytest.fixture(scope="module")
def lora_final(files):  # noqa: F811
    """The LoRA adapter a one-iteration `rebel train` run writes to final/."""
    run_dir = files["root"] / "one_iteration"
    assert main(train_args(files, run_dir, "--num_iterations", "1")) == 0
    final = run_dir / "final"
    assert (final / "adapter_config.json").is_file() and not (final / "config.json").exists()
    return final


def evaluate_argv(model, files, *extra: str) -> list[str]:  # noqa: F811
    """Evaluate `model` on the user's prompt-only jsonl (2 prompts, 4 new tokens)."""
    return ["evaluate", "--model_name_or_path", str(model), "--dataset", files["prompts"],
            "--split", "train", "--num_prompts", "2", "--max_new_tokens", "4", *extra]


@pytest.mark.parametrize("extra", [[], ["--eval_rewards", "none"]])
def test_evaluate_lora_final_on_user_jsonl_with_only_rewards(lora_final, files, tmp_path, capfd,
                                                             extra):  # noqa: F811
    output = tmp_path / "eval.json"
    code, out, err = run_main(capfd, *evaluate_argv(lora_final, files, "--rewards", "length",
                                                    "--output", str(output), *extra))
    assert code == 0, err
    result = json.loads(output.read_text())
    assert list(result["rewards"]) == ["length"]  # no TL;DR reward slipped in
    assert result["num_prompts"] == 2
    assert result["reward"] == pytest.approx(result["rewards"]["length"])
    assert out.splitlines()[0].startswith("reward: ") and "length: " in out
    assert "tldr" not in out


def test_evaluate_without_rewards_on_user_data_is_one_line(lora_final, files, capfd):  # noqa: F811
    code, _, err = run_main(capfd, *evaluate_argv(lora_final, files))
    assert_one_error_line(code, err, "give --rewards", f"on {files['prompts']}")


def test_tldr_reward_on_user_data_names_the_flag(lora_final, files, capfd):  # noqa: F811
    code, _, err = run_main(capfd, *evaluate_argv(lora_final, files, "--rewards", "length",
                                                  "--eval_rewards", "tldr_win_rate"))
    assert_one_error_line(code, err, "reward 'tldr_win_rate'", "--eval_rewards", "facts")


@pytest.mark.parametrize("values, rewards, eval_rewards", [
    ({"dataset": "builtin:tldr"}, ["tldr_judge"], ["tldr_win_rate"]),
    ({"dataset": "builtin:tldr", "eval_rewards": []}, ["tldr_judge"], []),  # an empty YAML list
    # --eval_rewards none
    ({"dataset": "builtin:tldr", "eval_rewards": ["none"]}, ["tldr_judge"], []),
    ({"dataset": "data.jsonl", "rewards": ["length"]}, ["length"], []),
])
def test_reward_defaults_follow_the_dataset(values, rewards, eval_rewards):
    config = EvaluateConfig.from_dict({"model_name_or_path": "m", **values}).validate()
    assert (config.rewards, config.eval_rewards) == (rewards, eval_rewards)


def test_empty_rewards_list_on_user_data_is_a_config_error():
    with pytest.raises(ConfigError, match="give --rewards"):
        EvaluateConfig.from_dict({"model_name_or_path": "m", "dataset": "d.jsonl",
                                  "rewards": []}).validate()
