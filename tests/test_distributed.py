"""Two CPU processes, as accelerate sets them up: DDP over gloo, and FSDP2 (parameters sharded as
DTensors; tests/fsdp_on_cpu.py). The same loop, no rewrite, for language and diffusion policies."""
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType
from safetensors.torch import load_file
from transformers import GenerationConfig

from rebel_rl import RebelConfig
from rebel_rl.data import load_prompt_dataset
from rebel_rl.errors import ConfigError
from rebel_rl.policies.causal_lm.policy import CausalLMPolicy
from rebel_rl.policies.diffusion.policy import DiffusionPolicy
from rebel_rl.sharding import check_sharding
from rebel_rl.training.online.loop import sharding_needs
from tiny import save_tiny_causal_lm
from tiny_diffusion import save_tiny_denoiser

TESTS = Path(__file__).resolve().parent
ARGS = ["--rewards", "length", "--prompts_per_iteration", "2", "--minibatch_prompts", "1", "--num_generations", "2", "--max_new_tokens", "6",
        "--eval_prompts", "3", "--eval_batch_size", "2",  # 3 batches of 1 prompt: one process runs 2, the other 1
        "--progress", "false", "--mixed_precision", "no", "--tensorboard", "false",
        "--lr_scheduler", "constant", "--warmup_ratio", "0"]  # the same rate at every step, however many steps

def launch(*args: str, fsdp: bool = False, expect_error: bool = False) -> subprocess.CompletedProcess:
    """`rebel train ...` on two processes: torchrun starts them, ACCELERATE_USE_CPU joins them over gloo."""
    launcher = Path(sys.executable).with_name("torchrun")
    entry = [str(TESTS / "fsdp_on_cpu.py")] if fsdp else ["-m", "rebel_rl.cli"]
    command = [str(launcher), "--nproc_per_node", "2", *entry, "train", *ARGS, *args]
    # the caller's PYTHONPATH after tests/ (a worktree's src over the editable install)
    path = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true", "PYTHONPATH": path}
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, env=env)
    if expect_error:
        assert result.returncode != 0
        return result
    assert result.returncode == 0, result.stderr[-3000:]
    assert ("sharded: FSDP2" in result.stdout) == fsdp
    return result

def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A tiny model with a quarter of its vocabulary counted as EOS, so completions end at different
    lengths, and the two processes of a run stop generating at different steps."""
    path = save_tiny_causal_lm(tmp_path_factory.mktemp("tiny") / "model")
    generation = GenerationConfig.from_pretrained(path)
    generation.eos_token_id = [generation.eos_token_id, *range(100, 200)]
    generation.save_pretrained(path)
    return str(path)

@pytest.fixture(scope="module")
def ddp_run(model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("ddp") / "run"
    launch("--model_name_or_path", model, "--num_iterations", "2", "--output_dir", str(run_dir))
    return run_dir

def test_two_process_run_through_accelerate_launch(ddp_run):
    found = metrics(ddp_run)
    # Written once (by the main process), counting both processes' samples: 2 processes x 2 prompts x 2.
    assert [m["iteration"] for m in found] == [1, 2]
    assert [m["reward_queries"] for m in found] == [8, 16]
    assert min(m["completions/min_length"] for m in found) < max(m["completions/max_length"] for m in found)
    # The processes split the held-out batches; the result covers each prompt once, in dataset order.
    config = RebelConfig()
    prompts = load_prompt_dataset(config.dataset, config.eval_split, config.prompt_column)["prompt"][:3]
    for result in json.loads((ddp_run / "eval.json").read_text()).values():
        assert len(result["per_prompt_reward"]) == 3
        assert [s["prompt"] for s in result["samples"]] == [p[-1]["content"] for p in prompts]
    assert (ddp_run / "final" / "adapter_model.safetensors").is_file()

def test_fsdp2_matches_ddp_and_saves_and_resumes_whole_weights(model, ddp_run, tmp_path):
    run_dir = tmp_path / "fsdp"
    launch("--model_name_or_path", model, "--num_iterations", "1", "--save_every", "1", "--output_dir", str(run_dir),
           fsdp=True)
    launch("--model_name_or_path", model, "--num_iterations", "2", "--resume", str(run_dir), fsdp=True)
    ddp, fsdp = metrics(ddp_run), metrics(run_dir)
    # Same seeds, same starting weights: sampling on the sharded model draws the same completions, and one
    # update (gradients reduce-scattered, not all-reduced) plus a resume gives the same second iteration.
    for key in ["reward", "kl", "loss", "grad_norm", "completions/mean_length"]:
        assert [m[key] for m in fsdp] == pytest.approx([m[key] for m in ddp], rel=1e-4, abs=1e-6), key
    # The saved adapter holds whole tensors (gathered from the shards), equal to DDP's up to reduction order.
    ddp_adapter, fsdp_adapter = (load_file(r / "final" / "adapter_model.safetensors") for r in (ddp_run, run_dir))
    assert ddp_adapter.keys() == fsdp_adapter.keys()
    for name, weight in ddp_adapter.items():
        assert torch.allclose(fsdp_adapter[name], weight, atol=1e-5), name
    assert json.loads((run_dir / "eval.json").read_text())["after"]["reward"] > -1e9

def test_fsdp2_full_finetuning_saves_the_same_whole_weights_as_ddp(model, tmp_path):
    runs = {}
    for fsdp in (False, True):
        runs[fsdp] = tmp_path / ("fsdp" if fsdp else "ddp")
        launch("--model_name_or_path", model, "--num_iterations", "1", "--use_lora", "false",
               "--learning_rate", "1e-4", "--eval_prompts", "0", "--output_dir", str(runs[fsdp]), fsdp=fsdp)
    ddp, fsdp = (load_file(runs[f] / "final" / "model.safetensors") for f in (False, True))
    start = load_file(Path(model) / "model.safetensors")
    assert ddp.keys() == fsdp.keys() == start.keys()
    assert any(not torch.equal(ddp[name], start[name]) for name in start)  # it trained
    for name, weight in ddp.items():
        assert torch.allclose(fsdp[name], weight, atol=1e-6), name

def test_a_set_up_refused_under_fsdp2_writes_nothing(model, tmp_path):
    run_dir = tmp_path / "run"
    result = launch("--model_name_or_path", model, "--algorithm", "ppo", "--num_iterations", "1",
                    "--output_dir", str(run_dir), fsdp=True, expect_error=True)
    assert "error: algorithm ppo is not supported under FSDP yet" in result.stderr
    assert not run_dir.exists()


class FakeState(SimpleNamespace):
    """The parts of accelerate's state that `check_sharding` reads."""

@pytest.mark.parametrize("state, overrides, message", [
    (FakeState(distributed_type=DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=1)), {},
     "FSDP1 is not supported: use FSDP2"),
    (FakeState(distributed_type=DistributedType.DEEPSPEED, deepspeed_plugin=SimpleNamespace(zero_stage=3)), {},
     "DeepSpeed ZeRO-3 is not supported"),
    (FakeState(distributed_type=DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=2)),
     {"algorithm": "ppo"}, "algorithm ppo is not supported under FSDP yet"),
    (FakeState(distributed_type=DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=2)),
     {"merge_adapter": True}, "merge_adapter is not supported under FSDP yet.*merge the saved final/"),
    (FakeState(distributed_type=DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=2)),
     {"generation_backend": "vllm"}, "generation_backend vllm is not supported under FSDP yet: run it with DDP"),
])
def test_unsupported_sharding_is_refused_with_the_fix(state, overrides, message):
    with pytest.raises(ConfigError, match=message):
        check_sharding(SimpleNamespace(state=state), sharding_needs(RebelConfig(**overrides), CausalLMPolicy.supports))
    fine = FakeState(distributed_type=DistributedType.FSDP, fsdp_plugin=SimpleNamespace(fsdp_version=2))
    check_sharding(SimpleNamespace(state=fine), sharding_needs(RebelConfig(), CausalLMPolicy.supports))
    with pytest.raises(ConfigError, match="a diffusion policy is not supported under FSDP"):
        check_sharding(SimpleNamespace(state=fine), sharding_needs(RebelConfig(), DiffusionPolicy.supports))

def test_a_diffusion_policy_trains_over_ddp(tmp_path):
    denoiser = save_tiny_denoiser(tmp_path / "unet")
    run_dir = tmp_path / "run"
    launch("--model_name_or_path", str(denoiser), "--dataset", "builtin:digits", "--rewards", "jpeg_compressibility",
           "--num_inference_steps", "4", "--guidance_scale", "1.0", "--lora_target_modules", "conv_out",
           "--lora_r", "4", "--eta", "300", "--kl_coef", "0", "--num_iterations", "2", "--output_dir", str(run_dir))
    found = metrics(run_dir)
    assert [m["reward_queries"] for m in found] == [8, 16] and all(m["grad_norm"] > 0 for m in found)
    assert len(json.loads((run_dir / "eval.json").read_text())["after"]["per_prompt_reward"]) == 3
    for name in ["final/adapter_model.safetensors", "samples_before_after.png", "samples/iter-000002-0.png"]:
        assert (run_dir / name).is_file(), name
