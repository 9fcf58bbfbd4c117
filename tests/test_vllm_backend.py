"""`generation_backend: vllm` on CPU: vLLM samples, the trainer re-scores; weight sync; a REBEL run; EOS; errors.

Needs vLLM (`.venv-vllm/`, made by scripts/setup.sh); tests/test_vllm_env.py runs this file there from
the main test command. vLLM's CPU attention wants head sizes of 32 or more, so the tiny model here has
2 heads of 32.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

import rebel_rl  # noqa: E402
from rebel_rl import ConfigError, ModelError, RebelConfig  # noqa: E402
from rebel_rl.policies.causal_lm.policy import CausalLMPolicy  # noqa: E402
from rebel_rl.policies.factory import load_policy  # noqa: E402
from rebel_rl.training.online.loop import RebelTrainer  # noqa: E402
from rebel_rl.training.run.outputs import read_metrics  # noqa: E402
from tiny import save_tiny_causal_lm, write_jsonl  # noqa: E402

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]
VLLM_TINY = dict(hidden_size=64, num_attention_heads=2, num_key_value_heads=1)
TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(save_tiny_causal_lm(tmp_path_factory.mktemp("vllm") / "tiny", **VLLM_TINY))


def _policy(path, **overrides):
    values = dict(model_name_or_path=path, generation_backend="vllm", max_new_tokens=8, temperature=0.7,
                  use_lora=False, vllm_kv_cache_gb=0.25)
    values.update(overrides)
    config = RebelConfig(**values)
    return load_policy(config.model, config.sampling, torch.device("cpu"), config.max_prompt_length)


@pytest.fixture(scope="module")
def policy(tiny):
    """Full fine-tuning: the engine's weights are the whole model's."""
    return _policy(tiny)


def _greedy(policy, backend):
    """Greedy completions (top_k=1) of PROMPTS by vLLM, or by transformers' generate from the trained model
    (hf) or from pi_ref (ref)."""
    policy.top_k = 1
    try:
        if backend == "vllm":
            return policy.sample(PROMPTS, 1)
        return CausalLMPolicy.sample(policy, PROMPTS, 1, reference=backend == "ref")
    finally:
        policy.top_k = 0


def _push_lm_head(policy, token_row: int, towards: torch.Tensor, scale: float = 3.0) -> None:
    """An update that changes greedy completions: one lm_head row moved, then the loop's notice."""
    with torch.no_grad():
        policy.model.lm_head.weight[token_row] = towards * scale
    policy.weights_updated()


def test_vllm_samples_rescored_by_the_trainer(policy):
    torch.manual_seed(0)
    rollout = policy.sample(PROMPTS, 2)
    assert rollout.completion_ids.shape[0] == 8 and len(rollout.completions) == 8
    token_logps = policy.sampling_token_log_probs(rollout)
    assert torch.isfinite(token_logps).all()
    # fp32 on both sides: measured 1e-6 to 5e-6 nats per sequence on this CPU.
    diff = policy.sampling_metrics()["vllm/logprob_diff"]
    assert diff < 1e-3, diff
    # Same seed, same samples: the per-prompt seeds come from torch's generator.
    torch.manual_seed(0)
    assert torch.equal(policy.sample(PROMPTS, 2).completion_ids, rollout.completion_ids)


def test_greedy_matches_the_trainer_before_and_after_an_update(policy):
    before = _greedy(policy, "vllm")
    assert torch.equal(before.completion_ids, _greedy(policy, "hf").completion_ids)
    # Make the token the first prompt's greedy completion starts with far less likely, everywhere.
    first = int(before.completion_ids[0, 0])
    _push_lm_head(policy, first, -policy.model.lm_head.weight[first].detach().clone())
    after_hf = _greedy(policy, "hf")
    assert not torch.equal(after_hf.completion_ids, before.completion_ids)  # the update changes it
    after = _greedy(policy, "vllm")
    assert torch.equal(after.completion_ids, after_hf.completion_ids)


def test_a_skipped_sync_is_caught(policy, monkeypatch):
    """The check above fails when the engine is not told: its greedy completion stays the old one."""
    stale = _greedy(policy, "vllm")
    monkeypatch.setattr(type(policy), "weights_updated", lambda self: None)
    first = int(stale.completion_ids[1, 0])
    _push_lm_head(policy, first, -policy.model.lm_head.weight[first].detach().clone())
    assert not torch.equal(_greedy(policy, "hf").completion_ids, stale.completion_ids)
    assert torch.equal(_greedy(policy, "vllm").completion_ids, stale.completion_ids)
    policy._stale = True  # leave the module's policy in sync for the tests after this one


def test_eos_handling_is_identical(policy):
    """One completion stops at EOS, another runs to max_new_tokens: same ids, masks and text as hf."""
    plain = _greedy(policy, "hf")
    # EOS takes the place of the third greedy token of the first prompt (its row made that token's, larger).
    third = int(plain.completion_ids[0, 2])
    eos = int(policy.eos_token_ids[0])
    _push_lm_head(policy, eos, policy.model.lm_head.weight[third].detach().clone(), scale=1.5)
    hf, vllm = _greedy(policy, "hf"), _greedy(policy, "vllm")
    assert hf.has_eos.any() and not hf.has_eos.all(), hf.has_eos
    for name in ["completion_ids", "completion_mask", "has_eos", "prompt_ids", "prompt_mask"]:
        assert torch.equal(getattr(vllm, name), getattr(hf, name)), name
    assert vllm.completions == hf.completions


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    return {"model": tiny, "train": write_jsonl(root / "train.jsonl", [{"prompt": p} for p in PROMPTS])}


def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]


def _config(files, run_dir, **overrides):
    values = dict(model_name_or_path=files["model"], dataset=files["train"], rewards=[], num_iterations=5,
                  prompts_per_iteration=4, minibatch_prompts=4, num_generations=4, max_new_tokens=8, num_epochs=4,
                  top_k=2, kl_coef=0.0, eval_prompts=0, lora_r=4, learning_rate=1e-2, warmup_ratio=0.0,
                  lr_scheduler="constant", mixed_precision="no", progress=False, tensorboard=False, save_every=0,
                  seed=0, output_dir=str(run_dir), generation_backend="vllm", vllm_kv_cache_gb=0.25)
    values.update(overrides)
    return RebelConfig(**values)


def test_five_rebel_iterations_with_vllm_raise_the_reward_and_resume_from_the_checkpoint(files, tmp_path):
    """LoRA (weights pushed merged): the reward climbs as with hf; the engine follows every update, and a
    resumed run's engine starts from the checkpoint's weights."""
    trainer = RebelTrainer(_config(files, tmp_path / "run", save_every=5), reward_funcs=[count_e])
    trainer.train()
    metrics = read_metrics(tmp_path / "run")
    rewards = [m["reward"] for m in metrics]
    assert max(rewards[1:]) > rewards[0] + 1.0, rewards
    # top_k=2 here: vLLM's log-probs are of the truncated distribution, the trainer's of the full one, so
    # the diagnostic also counts the dropped mass (about 34-37 nats over 8 tokens); it is finite and logged.
    assert all(0 <= m["vllm/logprob_diff"] < 100 for m in metrics), [m["vllm/logprob_diff"] for m in metrics]
    trained = _greedy(trainer.policy, "hf")
    assert torch.equal(_greedy(trainer.policy, "vllm").completion_ids, trained.completion_ids)
    del trainer
    resumed = RebelTrainer(_config(files, tmp_path / "run", num_iterations=6), reward_funcs=[count_e], resume=True)
    assert torch.equal(_greedy(resumed.policy, "hf").completion_ids, trained.completion_ids)
    assert torch.equal(_greedy(resumed.policy, "vllm").completion_ids, trained.completion_ids)


# ------------------------------------------------------------------ bad input: one line
def test_an_architecture_vllm_cannot_serve_is_one_line(tmp_path):
    path = save_tiny_causal_lm(tmp_path / "odd", **VLLM_TINY)
    config = (path / "config.json").read_text().replace("LlamaForCausalLM", "NoSuchForCausalLM")
    (path / "config.json").write_text(config)
    with pytest.raises(ModelError, match="vLLM cannot serve .*NoSuchForCausalLM"):
        rebel_rl.train(_config({"model": str(path), "train": write_jsonl(tmp_path / "t.jsonl", [{"prompt": "hi"}])},
                               tmp_path / "never"), reward_funcs=[count_e])
    assert not (tmp_path / "never").exists()  # refused before anything is written


def test_an_engine_that_fails_to_start_is_one_line_and_the_rerun_works(files, tmp_path):
    """`rebel train` (its own process, as in a terminal): exit code 2 and one `error:` line, nothing of vLLM's
    or torch's logs; the folder keeps config.yaml and no run, so that config with the cause fixed runs there
    without --overwrite."""
    run_dir = tmp_path / "run"
    # A KV cache of 1 KiB cannot hold one sequence of max_model_len tokens: vLLM refuses to start.
    failed = _rebel("train", "--model_name_or_path", files["model"], "--dataset", files["train"], "--rewards",
                    "length", "--generation_backend", "vllm", "--vllm_kv_cache_gb", str(2**-20), "--num_iterations",
                    "1", "--prompts_per_iteration", "2", "--minibatch_prompts", "2", "--max_new_tokens", "4",
                    "--eval_prompts", "0", "--progress", "false", "--output_dir", str(run_dir))
    err = failed.stderr.strip().splitlines()
    assert failed.returncode == 2 and len(err) == 1, failed.stderr
    assert err[0].startswith(f"error: the vLLM engine did not start for {files['model']} (vllm_kv_cache_gb "), err
    saved = RebelConfig.from_yaml(run_dir / "config.yaml")
    assert saved.sampling.generation_backend == "vllm" and saved.sampling.vllm_kv_cache_gb == 2**-20
    assert read_metrics(run_dir) == [] and not (run_dir / "final").exists()
    rerun = _rebel("train", "--config", str(run_dir / "config.yaml"), "--vllm_kv_cache_gb", "0.25")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert [m["iteration"] for m in read_metrics(run_dir)] == [1] and (run_dir / "final").is_dir()
    assert RebelConfig.from_yaml(run_dir / "config.yaml").sampling.vllm_kv_cache_gb == 0.25


def _rebel(*args: str) -> subprocess.CompletedProcess:
    """`rebel ARGS` in a process of its own (this environment's Python, this checkout's rebel_rl)."""
    return subprocess.run([sys.executable, "-m", "rebel_rl.cli", *args], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})


# ------------------------------------------------------------------ DDP: one engine per process
def test_two_ddp_processes_each_drive_their_own_engine_in_sync(files, tmp_path):
    """accelerate DDP on 2 CPU processes (torchrun, gloo), each with its colocated engine (tests/vllm_ddp_on_cpu.py):
    after the updates every rank's engine serves that rank's trained weights."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "true",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    command = [str(torchrun), "--nproc_per_node", "2", str(TESTS / "vllm_ddp_on_cpu.py"), files["model"],
               files["train"], str(tmp_path / "run")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"run-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [(r["rank"], r["world"]) for r in reports] == [(0, 2), (1, 2)]
    for r in reports:
        # Greedy: the engine's equals the trained model's, which the updates moved away from pi_ref's.
        assert r["greedy_engine"] == r["greedy_trainer"] != r["greedy_ref"], r
        # A rank whose engine kept the start's weights shows logprob_diff == moved (--skip-sync-on-rank 1
        # measured 3.43 for both on rank 1); synced ones measured 1e-6 to 3e-6 with moved 1.3 to 2.9.
        assert r["logprob_diff"] < 1e-3 and r["moved"] > 0.1, r
    assert reports[0]["greedy_engine"] == reports[1]["greedy_engine"]  # DDP keeps the ranks' weights equal
    logged = read_metrics(tmp_path / "run")  # the diagnostic averaged over both processes' samples
    assert [m["iteration"] for m in logged] == [1, 2] and all(m["vllm/logprob_diff"] < 1e-3 for m in logged), logged


def test_tensor_parallel_engines_under_several_processes_are_refused(tiny, monkeypatch):
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # as under accelerate launch
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda group=None: 2)
    with pytest.raises(ConfigError, match="vllm_tensor_parallel_size 2 spans GPUs .* each process drives its own"):
        _policy(tiny, vllm_tensor_parallel_size=2)


def test_smollm2_vllm_samples_rescored_by_the_trainer():
    policy = _policy("builtin:smollm2-135m-instruct", max_new_tokens=24, vllm_kv_cache_gb=1)
    torch.manual_seed(0)
    rollout = policy.sample([[{"role": "user", "content": p}] for p in PROMPTS], 2)
    assert torch.isfinite(policy.sampling_token_log_probs(rollout)).all()
    # Measured here: 3e-5 nats per sequence (fp32 on both sides, 24 tokens).
    assert policy.sampling_metrics()["vllm/logprob_diff"] < 1e-2
