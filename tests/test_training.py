"""The online loop end to end on a tiny random model: learning, rewards, KL, resuming, checkpoints, the API."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

import rebel_rl
from rebel_rl import ConfigError, RebelConfig
from rebel_rl.training.run import checkpoint as ckpt
from rebel_rl.training.online.loop import RebelTrainer, resume
from rebel_rl.training.run.outputs import read_metrics
from tiny import save_tiny_causal_lm, write_jsonl

TRAIN = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]
HELD_OUT = ["describe a good book", "what a wonderful day", "the food was", "summarize the post"]
COUNT_E = '''
def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    reward_file = root / "count_e.py"
    reward_file.write_text(COUNT_E)
    return {
        "model": str(save_tiny_causal_lm(root / "tiny")),
        "train": write_jsonl(root / "train.jsonl", [{"prompt": p} for p in TRAIN]),
        "held_out": write_jsonl(root / "held_out.jsonl", [{"prompt": p} for p in HELD_OUT]),
        "targets": write_jsonl(root / "targets.jsonl", [{"prompt": p, "target": f"T{i}"} for i, p in enumerate(TRAIN)]),
        "count_e": f"{reward_file}:count_e",
    }


def make_config(files, run_dir: Path, **overrides) -> RebelConfig:
    """A small, fast, exactly reproducible run (no autocast, constant learning rate)."""
    values = dict(model_name_or_path=files["model"], dataset=files["train"], rewards=[], num_iterations=2,
                  prompts_per_iteration=4, minibatch_prompts=2, num_generations=2, max_new_tokens=4, num_epochs=1,
                  eval_prompts=0, eval_dataset=files["held_out"], lora_r=4, learning_rate=1e-2, warmup_ratio=0.0,
                  lr_scheduler="constant", mixed_precision="no", progress=False, tensorboard=False, save_every=0,
                  seed=0, output_dir=str(run_dir))
    values.update(overrides)
    return RebelConfig(**values)


def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]


def constant(prompts, completions, **kwargs):
    return [0.5] * len(completions)


# ------------------------------------------------------------------ learning
def test_rebel_moves_reward_in_the_right_direction(files, tmp_path):
    """Reward = number of 'e' characters. top_k=2 gives the random tiny model a small action set, so a few
    REBEL iterations raise the reward clearly; with the loss sign flipped it falls to about 0 instead."""
    config = make_config(files, tmp_path / "run", num_iterations=4, num_generations=4, minibatch_prompts=4,
                         max_new_tokens=8, num_epochs=4, top_k=2, kl_coef=0.0, eval_prompts=4, eval_batch_size=16)
    summary = rebel_rl.train(config, reward_funcs=[count_e])
    rewards = [m["reward"] for m in read_metrics(tmp_path / "run")]
    before, after = summary["before"]["reward"], summary["after"]["reward"]
    # Held-out gain: +3.7 to +11.6 over seeds 0-7 here; a flipped loss sign drives it to 0 instead.
    assert after > before + 1.0, (before, after, rewards)
    # The batch reward, noisier (16 samples), also climbs well above the first iteration's.
    assert max(rewards[1:]) > rewards[0] + 1.0, rewards
    # The batch KL grows from exactly 0 as the policy leaves pi_ref.
    assert summary["after"]["kl"] > 0.1


def test_missing_eos_penalty_is_subtracted(files, tmp_path):
    penalty = 2.0
    config = make_config(files, tmp_path / "run", num_iterations=1, max_new_tokens=2, missing_eos_penalty=penalty,
                         kl_coef=0.0, log_completions=8)
    rebel_rl.train(config, reward_funcs=[constant])
    (metrics,) = read_metrics(tmp_path / "run")
    no_eos = metrics["completions/no_eos_fraction"]
    assert no_eos > 0.5  # two tokens from a 400-token random model almost never end with EOS
    assert metrics["rewards/constant"] == pytest.approx(0.5)
    assert metrics["reward"] == pytest.approx(0.5 - penalty * no_eos, abs=1e-6)
    assert metrics["rlhf_reward"] == pytest.approx(metrics["reward"], abs=1e-6)  # kl_coef = 0
    samples = [json.loads(line) for line in (tmp_path / "run" / "completions.jsonl").read_text().splitlines()]
    assert {s["reward"] for s in samples} <= {0.5, 0.5 - penalty}


def test_kl_penalty_and_zero_kl_at_start(files, tmp_path):
    kl_coef = 0.5
    config = make_config(files, tmp_path / "run", num_iterations=3, kl_coef=kl_coef, learning_rate=3e-2,
                         num_epochs=2, max_new_tokens=6, top_k=2)
    rebel_rl.train(config, reward_funcs=[count_e])
    metrics = read_metrics(tmp_path / "run")
    # LoRA's B matrices start at zero: pi_1 == pi_ref exactly, so the first batch has no KL at all.
    assert metrics[0]["kl"] == pytest.approx(0.0, abs=1e-6)
    assert metrics[0]["rlhf_reward"] == pytest.approx(metrics[0]["reward"], abs=1e-6)
    assert any(abs(m["kl"]) > 1e-3 for m in metrics[1:]), [m["kl"] for m in metrics]
    for m in metrics:
        assert m["rlhf_reward"] == pytest.approx(m["reward"] - kl_coef * m["kl"], abs=1e-5)


# ------------------------------------------------------------------ resuming
RESUME_KEYS = ["reward", "reward_std", "kl", "rlhf_reward", "loss", "grad_norm", "completions/mean_length"]


def resumable_config(files, run_dir, num_iterations):
    return make_config(files, run_dir, rewards=[files["count_e"]], num_iterations=num_iterations, save_every=2,
                       num_epochs=2, kl_coef=0.1, eval_prompts=2, max_new_tokens=6, top_k=2)


def iterations(run_dir: Path, name: str = "metrics.jsonl") -> list[int]:
    return [json.loads(line)["iteration"] for line in (run_dir / name).read_text().splitlines()]


@pytest.fixture(scope="module")
def straight_run(files, tmp_path_factory):
    """Four iterations in one go, checkpoints at 2 and 4 (the reference for the resumed runs)."""
    run_dir = tmp_path_factory.mktemp("straight") / "a"
    rebel_rl.train(resumable_config(files, run_dir, 4))
    return run_dir


def assert_same_metrics(a: list[dict], b: list[dict], iterations_to_compare):
    for i in iterations_to_compare:
        for key in RESUME_KEYS:
            assert a[i - 1][key] == b[i - 1][key], (i, key, a[i - 1][key], b[i - 1][key])


def test_resume_with_more_iterations_matches_a_straight_run(files, straight_run, tmp_path):
    run_b = tmp_path / "b"
    rebel_rl.train(resumable_config(files, run_b, 2))
    assert [p.name for p in ckpt.list_checkpoints(run_b / "checkpoints")] == ["iter-000002"]
    summary = resume(run_b, num_iterations=4)
    assert summary["iterations"] == 4
    assert iterations(run_b) == [1, 2, 3, 4]
    assert iterations(run_b, "completions.jsonl") == sorted(iterations(run_b, "completions.jsonl"))
    assert [p.name for p in ckpt.list_checkpoints(run_b / "checkpoints")] == ["iter-000002", "iter-000004"]
    assert (run_b / "final" / "adapter_model.safetensors").is_file()
    # Same seed, same prompts, restored optimizer and RNG: the continued iterations are the straight run's.
    assert_same_metrics(read_metrics(straight_run), read_metrics(run_b), [1, 2, 3, 4])
    eval_a = json.loads((straight_run / "eval.json").read_text())
    eval_b = json.loads((run_b / "eval.json").read_text())
    assert eval_b["before"] == eval_a["before"]  # read back from eval_before.json, not re-sampled
    assert eval_b["after"]["reward"] == eval_a["after"]["reward"]


def test_resume_after_a_crash_redoes_the_unsaved_iterations(files, straight_run, tmp_path):
    """Crash after iteration 4 was logged but before its checkpoint: resume from 2, drop and redo 3-4."""
    run_c = tmp_path / "c"
    shutil.copytree(straight_run, run_c)
    shutil.rmtree(run_c / "checkpoints" / "iter-000004")
    shutil.rmtree(run_c / "final")
    assert iterations(run_c) == [1, 2, 3, 4]
    resume(run_c)
    assert iterations(run_c) == [1, 2, 3, 4]
    assert_same_metrics(read_metrics(straight_run), read_metrics(run_c), [1, 2, 3, 4])
    completions = iterations(run_c, "completions.jsonl")
    assert completions == iterations(straight_run, "completions.jsonl")


def test_crash_mid_save_never_replaces_a_good_checkpoint(files, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    trainer = RebelTrainer(make_config(files, run_dir, rewards=["length"], save_every=1))
    trainer.train()
    folder = run_dir / "checkpoints"
    good = folder / "iter-000002"
    assert ckpt.list_checkpoints(folder) == [folder / "iter-000001", good]
    snapshot = {p.name: p.read_bytes() for p in good.iterdir()}

    def disk_full(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(ckpt.torch, "save", disk_full)  # after the weights are written, before the state
    for iteration in (3, 2):  # a new checkpoint, and re-saving an existing one (resuming a finished run)
        trainer.iteration = iteration
        with pytest.raises(OSError):
            trainer.save_checkpoint()
        assert ckpt.list_checkpoints(folder) == [folder / "iter-000001", good]
        assert {p.name: p.read_bytes() for p in good.iterdir()} == snapshot
        assert ckpt.latest_checkpoint_or_fail(run_dir) == good
    partial = folder / ".tmp-iter-000002"
    assert (partial / "adapter_model.safetensors").is_file() and not (partial / ckpt.STATE_FILE).exists()
    # A folder named like a checkpoint but without the trainer state is never taken for one.
    (folder / "iter-000009").mkdir()
    (folder / "iter-000009" / "adapter_model.safetensors").write_bytes(b"partial")
    assert ckpt.list_checkpoints(folder)[-1] == good

    monkeypatch.undo()
    trainer.iteration = 3
    trainer.save_checkpoint()  # once the disk is fine again, saving works and leaves no partial folder
    assert not (folder / ".tmp-iter-000003").exists()
    assert ckpt.list_checkpoints(folder) == [good, folder / "iter-000003"]  # keeps the last two
    assert ckpt.latest_checkpoint_or_fail(run_dir) == folder / "iter-000003"


# ------------------------------------------------------------------ full fine-tuning
def test_full_finetuning_keeps_the_reference_frozen_and_resumes(files, tmp_path):
    run_dir = tmp_path / "run"
    original = AutoModelForCausalLM.from_pretrained(files["model"]).state_dict()
    trainer = RebelTrainer(make_config(files, run_dir, use_lora=False, num_iterations=1, rewards=["length"],
                                       learning_rate=1e-2, num_epochs=2))
    trainer.train()
    reference = trainer.policy.reference_model
    assert reference is not None and not any(p.requires_grad for p in reference.parameters())
    ref_state, policy_state = reference.state_dict(), trainer.policy.model.state_dict()
    assert all(torch.equal(ref_state[k], v) for k, v in original.items())
    assert any(not torch.equal(policy_state[k], v) for k, v in original.items())
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert not (run_dir / "final" / "adapter_model.safetensors").exists()
    assert (ckpt.list_checkpoints(run_dir / "checkpoints")[-1] / "model.safetensors").is_file()
    # Resuming loads the full weights back (the checkpoint holds no adapter).
    resume(run_dir, num_iterations=2)
    assert iterations(run_dir) == [1, 2]


# ------------------------------------------------------------------ the Python API
def test_api_callable_reward_gets_extra_columns_aligned(files, tmp_path):
    calls = []
    target_of = {p: f"T{i}" for i, p in enumerate(TRAIN)}

    def target_reward(prompts, completions, target, **kwargs):
        calls.append((list(prompts), list(target), list(completions)))
        return [float(len(c) % 3) for c in completions]

    config = make_config(files, tmp_path / "run", dataset=files["targets"], eval_dataset=files["targets"],
                         eval_prompts=2, eval_generations=2, save_every=1)
    summary = rebel_rl.train(config, reward_funcs=[target_reward])
    assert summary["iterations"] == 2 and summary["run_dir"] == str(tmp_path / "run")
    assert len(calls) == 4  # eval before, 2 iterations, eval after
    for prompts, targets, completions in calls:
        assert len(prompts) == len(targets) == len(completions)
        assert targets == [target_of[p] for p in prompts]
        assert prompts[0::2] == prompts[1::2]  # n = 2 completions per prompt, consecutive
    assert sorted({p for prompts, _, _ in calls[1:3] for p in prompts}) == sorted(TRAIN)
    metrics = read_metrics(tmp_path / "run")
    assert all("rewards/target_reward" in m for m in metrics)

    # The callable is not in config.yaml: resuming needs it again, and says so when it is missing.
    with pytest.raises(ConfigError, match="rewards is empty"):
        resume(tmp_path / "run", num_iterations=3)
    resume(tmp_path / "run", num_iterations=3, reward_funcs=[target_reward])
    assert iterations(tmp_path / "run") == [1, 2, 3]


def test_empty_rewards_without_callables_is_a_config_error(files, tmp_path):
    with pytest.raises(ConfigError, match="rewards is empty"):
        rebel_rl.train(make_config(files, tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_three_generations_with_gradient_accumulation(files, tmp_path):
    sizes = []

    def record(prompts, completions, **kwargs):
        sizes.append(len(completions))
        return count_e(prompts, completions)

    config = make_config(files, tmp_path / "run", num_generations=3, num_iterations=1, minibatch_prompts=1,
                         gradient_accumulation_steps=2, num_epochs=2)
    rebel_rl.train(config, reward_funcs=[record])
    (metrics,) = read_metrics(tmp_path / "run")
    assert sizes == [12] and metrics["reward_queries"] == 12
    assert torch.isfinite(torch.tensor([metrics["loss"], metrics["grad_norm"], metrics["reward"]])).all()
    assert metrics["grad_norm"] > 0


def test_resume_recovers_a_checkpoint_set_aside_by_a_crash_mid_swap(tmp_path):
    """Re-saving iter-2 moves the old copy to .old-iter-000002 first; a crash right then must not lose it."""
    folder = tmp_path / "checkpoints"
    (folder / "iter-000001").mkdir(parents=True)
    torch.save({"iteration": 1, "scheduler": {}}, folder / "iter-000001" / ckpt.STATE_FILE)
    (folder / ".old-iter-000002").mkdir()
    torch.save({"iteration": 2, "scheduler": {}}, folder / ".old-iter-000002" / ckpt.STATE_FILE)
    assert ckpt.latest_checkpoint_or_fail(tmp_path) == folder / "iter-000002"
    assert torch.load(folder / "iter-000002" / ckpt.STATE_FILE)["iteration"] == 2
