"""A truncated weights file at every loader (policy, value model, reward model, denoiser, diffusion
pipeline, `rebel evaluate`'s adapter) and an empty or malformed data file are one `error:` line;
`rebel evaluate` takes the LoRA adapter `rebel train` writes."""
from __future__ import annotations

import json

import pytest

from cli_run import (
    files,
    in_tmp_dir,
    saved_run,
    train_args,
    truncate,
    truncated_copy,
)  # noqa: F401 (fixtures)
from test_cli import assert_one_error_line, run_main


def test_truncated_policy_weights_are_one_line(files, tmp_path, capfd):
    model = truncated_copy(files["model"], tmp_path, "model.safetensors")
    args = train_args(files, tmp_path / "run")
    args[args.index(files["model"])] = model
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, f"cannot load model '{model}'", "incomplete metadata")


def test_truncated_value_model_is_one_line(files, tmp_path, capfd):
    value = truncated_copy(files["model"], tmp_path, "model.safetensors")
    code, _, err = run_main(
        capfd, *train_args(files, tmp_path / "run", "--algorithm", "ppo", "--value_model", value)
    )
    assert_one_error_line(code, err, f"cannot load value model '{value}'")


def test_truncated_reward_model_is_one_line(files, tmp_path, capfd):
    from tiny import save_tiny_reward_model

    reward = truncated_copy(
        str(save_tiny_reward_model(tmp_path / "rm")), tmp_path, "model.safetensors"
    )
    args = train_args(files, tmp_path / "run")
    args[args.index("length")] = f"model:{reward}"
    code, _, err = run_main(capfd, *args)
    assert_one_error_line(code, err, "cannot load reward model", "SafetensorError")


def test_truncated_denoiser_is_one_line(tmp_path, capfd):
    from test_images import save_tiny_denoiser

    denoiser = truncated_copy(
        str(save_tiny_denoiser(tmp_path / "unet")), tmp_path, "diffusion_pytorch_model.safetensors"
    )
    code, _, err = run_main(capfd, "train-images", "--model_name_or_path", denoiser, "--output_dir",
                            str(tmp_path / "run"), "--num_iterations", "1", "--progress", "false")
    assert_one_error_line(code, err, "cannot load the denoiser")


def test_truncated_diffusion_pipeline_is_one_line(tmp_path, capfd):
    from tiny_diffusion import save_tiny_pipeline

    pipeline = save_tiny_pipeline(tmp_path / "pipe")
    truncate(pipeline / "unet" / "diffusion_pytorch_model.safetensors")
    code, _, err = run_main(
        capfd,
        "train-images",
        "--model_name_or_path",
        str(pipeline),
        "--output_dir",
        str(tmp_path / "run"),
        "--num_iterations",
        "1",
        "--progress",
        "false",
        "--dataset",
        "builtin:animals",
        "--rewards",
        "jpeg_compressibility",
        "--reward_weights",
        "1",
    )
    assert_one_error_line(code, err, "cannot load diffusion checkpoint")


# ------------------------------------------------------------------ `rebel evaluate`
def evaluate_args(model: str, files) -> list[str]:
    return [
        "evaluate",
        "--model_name_or_path",
        model,
        "--dataset",
        files["prompts"],
        "--split",
        "train",
        "--rewards",
        "length",
        "--eval_rewards",
        "length",
        "--num_prompts",
        "2",
        "--max_new_tokens",
        "4",
    ]


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


# ------------------------------------------------------------------ empty and malformed data files
@pytest.mark.parametrize(
    "name, text, fragments",
    [
        ("empty.jsonl", "", ["dataset file empty.jsonl has no rows"]),
        ("blank.jsonl", "\n\n", ["dataset file blank.jsonl has no rows"]),
        (
            "torn.jsonl",
            '{"prompt": "a"}\n{"prompt": "b"\n{"prompt": "c"}\n',
            ["dataset file torn.jsonl line 2 is not valid JSON", "fix or remove that line"],
        ),
        (
            "list.jsonl",
            '{"prompt": "a"}\n[1, 2]\n',
            ["dataset file list.jsonl line 2 is not a JSON object"],
        ),
        ("empty.csv", "", ["dataset file empty.csv has no rows"]),
    ],
)
def test_empty_or_malformed_data_file_is_one_line(name, text, fragments, files, tmp_path, capfd):
    data = tmp_path / name
    data.write_text(text)
    args = train_args(files, tmp_path / "run")
    args[args.index(files["prompts"])] = str(data)
    code, _, err = run_main(capfd, *args)
    line = assert_one_error_line(code, err, *fragments)
    assert "StopIteration" not in line
    assert not (tmp_path / "run").exists()
