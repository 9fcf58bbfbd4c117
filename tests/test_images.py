"""Images through the one online loop: the policy factory, DDPO's math and objective, REBEL raising JPEG
compressibility of a tiny diffusion model inside RebelTrainer, the image outputs and resume, the CLI, and
the packaged GPU recipe (LCM + LoRA + aesthetic reward) for one full iteration on tiny random components."""
import json
import math

import pytest
import torch

from rebel_rl import RebelConfig
from rebel_rl.algorithms.ddpo import PromptStatTracker, ddpo_loss
from rebel_rl.cli import main
from rebel_rl.errors import ConfigError, ModelError
from rebel_rl.config import algorithm_spec
from rebel_rl.policies.factory import check_policy_source, is_diffusion, policy_kind
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm
from tiny_diffusion import save_tiny_clip, save_tiny_denoiser, save_tiny_pipeline


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    return str(save_tiny_denoiser(tmp_path_factory.mktemp("unet")))


def tiny_config(denoiser: str, run_dir, **overrides) -> RebelConfig:
    """The digits task on a tiny random 16x16 UNet: 4 DDIM steps, no guidance, LoRA on the output conv."""
    values = dict(model_name_or_path=denoiser, dataset="builtin:digits", rewards=["jpeg_compressibility"],
                  temperature=1.0, mixed_precision="no", num_inference_steps=4, guidance_scale=1.0,
                  lora_target_modules="conv_out", lora_r=4, eta=300.0, kl_coef=0.0, learning_rate=3e-2,
                  warmup_ratio=0.0, lr_scheduler="constant", num_iterations=2, prompts_per_iteration=8,
                  minibatch_prompts=8, num_generations=2, eval_prompts=4, eval_batch_size=64, save_every=0, tensorboard=False,
                  progress=False, output_dir=str(run_dir))
    return RebelConfig(**(values | overrides)).validate()


# --- which policy ------------------------------------------------------------------------------------

def test_the_factory_tells_diffusion_models_from_causal_lms(denoiser, tmp_path):
    lm = str(save_tiny_causal_lm(tmp_path / "lm"))
    pipeline = str(save_tiny_pipeline(tmp_path / "pipe"))
    kinds = {name: is_diffusion(RebelConfig(model_name_or_path=name))
             for name in ["builtin:digits-denoiser", denoiser, pipeline, lm, "builtin:smollm2-135m-instruct", "org/model"]}
    assert list(kinds.values()) == [True, True, True, False, False, False]
    assert is_diffusion(RebelConfig(model_name_or_path="org/model", model_type="diffusion"))
    # Unset temperature: the diffusion sampler as defined (noise scale 1.0); a causal LM samples at 0.7.
    assert default_temperature(RebelConfig(model_name_or_path=denoiser, output_dir="x")) == 1.0
    assert default_temperature(RebelConfig(model_name_or_path=lm, output_dir="x")) == 0.7
    assert default_temperature(RebelConfig(model_name_or_path=denoiser, temperature=0.5, output_dir="x")) == 0.5
    with pytest.raises(ConfigError, match="use ddpo"):
        check_source(RebelConfig(model_name_or_path=denoiser, algorithm="ppo"))
    with pytest.raises(ConfigError, match="for a causal LM use ppo"):
        check_source(RebelConfig(model_name_or_path=lm, algorithm="ddpo"))
    with pytest.raises(ModelError, match="unknown built-in diffusion model"):
        check_source(RebelConfig(model_name_or_path="builtin:cats", model_type="diffusion"))
    with pytest.raises(ModelError, match="neither unet/"):
        check_source(RebelConfig(model_name_or_path=lm, model_type="diffusion"))


def check_source(config: RebelConfig):
    return check_policy_source(config.model, algorithm_spec(config.algorithm), config.pair_source)


def default_temperature(config: RebelConfig) -> float:
    """The temperature a run samples at: the config's, else the policy kind's own (the trainer fills it in)."""
    return config.validate().temperature or policy_kind(config.model).supports.default_temperature


# --- DDPO ---------------------------------------------------------------------------------------------

def test_ddpo_normalises_each_prompt_by_its_own_reward_history():
    tracker = PromptStatTracker(buffer_size=16, min_count=2)
    # Two prompts on very different reward scales: each is standardised on its own (across prompts,
    # "a" would be all negative and "b" all positive).
    advantages = tracker.advantages(["a", "b", "a", "b"], torch.tensor([1.0, 100.0, 3.0, 104.0]))
    torch.testing.assert_close(advantages, torch.tensor([-1.0, -1.0, 1.0, 1.0]), atol=1e-5, rtol=0)
    # The next time "a" comes, its mean and std are over all four rewards it has had: mean 4, std sqrt(5).
    advantages = tracker.advantages(["a", "a"], torch.tensor([5.0, 7.0]))
    torch.testing.assert_close(advantages, (torch.tensor([5.0, 7.0]) - 4) / math.sqrt(5), atol=1e-5, rtol=0)


def test_ddpo_uses_batch_stats_until_a_prompt_has_min_count_rewards_and_keeps_buffer_size():
    tracker = PromptStatTracker(buffer_size=3, min_count=3)
    rewards = torch.tensor([0.0, 2.0, 10.0, 12.0])
    advantages = tracker.advantages(["a", "a", "b", "b"], rewards)  # 2 < 3 rewards each: batch mean 6, std 5.099
    torch.testing.assert_close(advantages, (rewards - 6) / rewards.std(unbiased=False), atol=1e-5, rtol=0)
    advantages = tracker.advantages(["a", "a"], torch.tensor([4.0, 6.0]))  # buffer keeps [2, 4, 6]
    torch.testing.assert_close(advantages, torch.tensor([0.0, 2.0]) / math.sqrt(8 / 3), atol=1e-5, rtol=0)
    assert tracker.buffers == {"a": [2.0, 4.0, 6.0], "b": [10.0, 12.0]}


def test_ddpo_loss_takes_a_clipped_ratio_per_denoising_step():
    old = torch.zeros(2, 3, dtype=torch.float64)
    new = torch.tensor([[0.0, math.log(1.5), 0.0], [0.0, 0.0, math.log(0.5)]], dtype=torch.float64, requires_grad=True)
    loss, ratio, clipped = ddpo_loss(new, old, torch.tensor([1.0, -1.0]), clip_range=0.2)
    # Row 0 (A = +1): terms -1, -min(1.5, 1.2), -1; row 1 (A = -1): terms 1, 1, max(0.5, 0.8).
    # A ratio per trajectory (1.5 and 0.5 on every step) would give (-1.2 * 3 + 0.8 * 3) / 6 = -0.2 instead.
    assert loss.item() == pytest.approx((-1 - 1.2 - 1 + 1 + 1 + 0.8) / 6)
    assert clipped.item() == pytest.approx(2 / 6)
    loss.backward()
    expected = torch.tensor([[-1, 0, -1], [1, 1, 0]], dtype=torch.float64) / 6  # clipped steps get no gradient
    torch.testing.assert_close(new.grad, expected)
    torch.testing.assert_close(ratio.detach()[0, 1], torch.tensor(1.5, dtype=torch.float64))


def test_ddpo_runs_in_the_loop_with_prompt_keys_from_the_conditioning(denoiser, tmp_path):
    trainer = RebelTrainer(tiny_config(denoiser, tmp_path / "run", algorithm="ddpo", num_generations=2,
                                       min_count=2, eval_prompts=0, num_epochs=2, minibatch_prompts=4))
    trainer.train()
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["reward_queries"] for m in metrics] == [16, 32]
    assert all("ddpo/clip_fraction" in m and m["ddpo/advantage_abs_mean"] > 0 for m in metrics)
    stats = trainer.objective.state_dict()["prompt_stats"]
    # One key per digit the model was conditioned on (prompts are phrasings of the ten digits).
    assert 1 <= len(stats) <= 10 and sum(len(v) for v in stats.values()) == 32
    rollout = trainer.policy.sample(["a handwritten digit 3", "the number 3, written by hand", "a handwritten 7"], 1)
    keys = rollout.prompt_keys()
    assert keys[0] == keys[1] != keys[2]


# --- REBEL in the loop: the reward moves, outputs are images ------------------------------------------------

def test_rebel_in_the_loop_raises_jpeg_compressibility_and_writes_image_outputs(denoiser, tmp_path):
    run = tmp_path / "run"
    trainer = RebelTrainer(tiny_config(denoiser, run, num_iterations=8, prompts_per_iteration=32,
                                       minibatch_prompts=32, eval_prompts=10, eval_every=4))
    evaluations, evaluate = [], trainer._evaluate
    trainer._evaluate = lambda reference: evaluations.append(reference) or evaluate(reference)
    summary = trainer.train()
    # Before, then iterations 4 and 8; the final evaluation is the one of iteration 8, not run again.
    assert evaluations == [True, False, False]
    final_eval = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert final_eval["iteration"] == 8 and final_eval["eval/reward"] == summary["after"]["reward"]
    before, after = summary["before"]["rewards"], summary["after"]["rewards"]
    assert after["jpeg_compressibility"] > before["jpeg_compressibility"] + 0.01, (before, after)
    assert summary["after"]["kl"] > 0 == summary["before"]["kl"]
    # Sample images and what names them; the before/after grid, reward curves; the adapter and scheduler.
    records = [json.loads(line) for line in (run / "completions.jsonl").read_text().splitlines()]
    assert records[0]["completion"] == "samples/iter-000001-0.png" and (run / records[-1]["completion"]).is_file()
    for name in ["samples_before_after.png", "reward_curves.png", "reward_kl.png", "eval.md",
                 "final/adapter_model.safetensors", "final/scheduler/scheduler_config.json"]:
        assert (run / name).is_file(), name
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["after"]["samples"][0]["completion"] == "image 1x16x16"
    assert "jpeg_compressibility" in (run / "eval.md").read_text()


def test_an_image_run_resumes_from_its_lora_checkpoint(denoiser, tmp_path):
    run = tmp_path / "run"
    first = RebelTrainer(tiny_config(denoiser, run, save_every=1, eval_prompts=0))
    first.train()
    weights = {n: p.detach().clone() for n, p in first.policy.model.named_parameters() if "lora_" in n}
    resumed = RebelTrainer(tiny_config(denoiser, run, num_iterations=3, eval_prompts=0), resume=True)
    assert resumed.iteration == 2 and resumed.reward_queries == 32
    for name, param in resumed.policy.model.named_parameters():
        if name in weights:
            torch.testing.assert_close(param.detach(), weights[name])
    resumed.train()
    assert [json.loads(line)["iteration"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


# --- the command line -------------------------------------------------------------------------------------

def test_train_images_help_shows_the_image_demo_defaults(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train-images", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "builtin:digits-denoiser" in text and "jpeg_compressibility" in text and "--sampler" in text


@pytest.mark.parametrize("argv, message", [
    (["train-images", "--sampler", "euler"], "sampler must be one of ddim, lcm"),
    (["train-images", "--algorithm", "ppo", "--output_dir", "unused"], "use ddpo"),
    (["train", "--config", "builtin:no_such_recipe"], "no packaged config 'no_such_recipe'"),
])
def test_train_images_bad_input_is_one_error_line_and_exit_code_2(argv, message, capfd, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0]


# --- the paper's setup for GPUs, on tiny components ---------------------------------------------------------

def test_the_lcm_aesthetic_recipe_runs_one_full_rebel_iteration(tmp_path, monkeypatch):
    """configs/lcm_aesthetic.yaml as shipped, with only the model source (a folder of tiny random components in
    the LCM_Dreamshaper_v7 layout), the image size, the batch and the run folder changed; the aesthetic
    reward is the real AestheticReward on a tiny CLIP (no download)."""
    from rebel_rl.rewards import aesthetic
    from rebel_rl.rewards.aesthetic import AestheticReward

    clip_dir, head = save_tiny_clip(tmp_path)
    monkeypatch.setattr(aesthetic, "default_aesthetic_reward",
                        lambda: AestheticReward.from_pretrained(str(clip_dir), str(head)))
    recipe = RebelConfig.from_yaml("builtin:lcm_aesthetic")
    assert (recipe.model_name_or_path, recipe.sampler, recipe.rewards) == ("SimianLuo/LCM_Dreamshaper_v7", "lcm", ["aesthetic"])
    config = recipe.with_overrides(dict(
        model_name_or_path=str(save_tiny_pipeline(tmp_path / "lcm")), image_size=16, num_iterations=1,
        prompts_per_iteration=2, minibatch_prompts=1, gradient_accumulation_steps=2, eval_prompts=2,
        output_dir=str(tmp_path / "run"),
        tensorboard=False, progress=False)).validate()
    trainer = RebelTrainer(config)
    assert trainer.policy.guidance_embedding_dim == 16 and not trainer.policy.uses_guidance
    summary = trainer.train()
    metrics = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert metrics["reward_queries"] == 4 and math.isfinite(metrics["rewards/aesthetic"]) and metrics["grad_norm"] > 0
    assert summary["after"]["kl"] != 0
    lora_b = [p for n, p in trainer.policy.model.named_parameters() if "lora_B" in n]
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b)  # the update moved the adapter
    for name in ["final/adapter_model.safetensors", "samples_before_after.png", "eval.md"]:
        assert (tmp_path / "run" / name).is_file(), name
