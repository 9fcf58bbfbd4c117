"""Diffusion policies: the per-step Gaussian log-density, samplers against diffusers, recorded vs recomputed
log-probs, the LoRA reference, image rewards, the latent (Stable Diffusion / LCM) policy and the aesthetic
reward on tiny random components, and a few manual REBEL steps that raise JPEG compressibility."""

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    LCMScheduler,
    UNet2DModel,
)
from diffusers.utils.torch_utils import randn_tensor
from tiny_diffusion import save_tiny_clip, save_tiny_pipeline

from rebel_rl.algorithms.rebel import rebel_loss
from rebel_rl.errors import DataError, RewardError
from rebel_rl.policies.diffusion.policy import (
    ClassConditionalDiffusionPolicy,
    add_lora,
    concat_diffusion_rollouts,
    frozen_copy,
)
from rebel_rl.policies.diffusion.sampling import (
    DDIMSampler,
    LCMSampler,
    gaussian_log_density,
    make_sampler,
)
from rebel_rl.rewards import images as image_rewards
from rebel_rl.tasks.digits import quality as digit_rewards
from rebel_rl.tasks.digits.images import load_digit_images
from rebel_rl.tasks.digits.prompts import digit_of_prompt, load_digit_prompts

SCHEDULE = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "clip_sample": True}
LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"]


def tiny_unet(size: int = 8, seed: int = 0) -> UNet2DModel:
    torch.manual_seed(seed)
    return UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=11, norm_num_groups=4, attention_head_dim=8,
    ).eval()


def tiny_policy(sampler: str = "ddim", guidance_scale: float = 1.0, lora: bool = True, steps: int = 4,
                size: int = 8, seed: int = 0, targets: list[str] = LORA_TARGETS, **overrides
                ) -> ClassConditionalDiffusionPolicy:
    model = tiny_unet(size, seed)
    config = DDPMScheduler(**SCHEDULE).config
    steps_sampler = make_sampler(sampler, config, steps, 1.0, **({"timestep_spacing": "trailing"} | overrides))
    reference = None if lora else frozen_copy(model)
    model = add_lora(model, targets, r=4) if lora else model
    return ClassConditionalDiffusionPolicy(model, steps_sampler, prompt_to_class=digit_of_prompt, null_class=10,
                                           guidance_scale=guidance_scale, reference_model=reference)


PROMPTS = ["a handwritten digit 3", "a handwritten seven"]


# --- the density and the samplers -----------------------------------------------------------------

def test_gaussian_log_density_is_the_normal_log_prob_summed_over_pixels():
    torch.manual_seed(0)
    mean = torch.randn(3, 2, 4, 4)
    std = torch.tensor([0.3, 1.7, 0.0])
    x = mean + 0.9 * torch.randn(3, 2, 4, 4)
    got = gaussian_log_density(x, mean, std)
    for row in range(2):
        expected = torch.distributions.Normal(mean[row].double(), std[row].double()).log_prob(x[row].double()).sum()
        assert got[row].item() == pytest.approx(expected.item(), rel=1e-10)
    assert got[2].item() == 0.0  # std 0: a deterministic step contributes nothing
    assert got.dtype == torch.float64
    # A wrong sign or a missing sigma would move these values: they are far from the alternatives.
    unit = torch.distributions.Normal(mean[1], 1.0).log_prob(x[1]).sum()
    assert abs(got[1].item() - unit.item()) > 1.0


def test_deterministic_rows_pass_no_gradient_and_no_nan():
    mean = torch.zeros(2, 4, requires_grad=True)
    gaussian_log_density(torch.ones(2, 4), mean, torch.tensor([0.5, 0.0])).sum().backward()
    assert torch.isfinite(mean.grad).all() and mean.grad[1].abs().sum() == 0 and mean.grad[0].abs().sum() > 0


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_mean_and_std_match_the_diffusers_step(prediction_type):
    scheduler = DDIMScheduler(**SCHEDULE, prediction_type=prediction_type)  # leading spacing: t - 100
    sampler = DDIMSampler(scheduler, 10, eta=0.7)
    timesteps, prev = sampler.schedule()
    torch.manual_seed(0)
    for t, t_prev in zip(timesteps, prev):
        sample, output, noise = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
        expected = scheduler.step(output, int(t), sample, eta=0.7, variance_noise=noise).prev_sample
        mean, std = sampler.step(output, sample, t.expand(2), t_prev.expand(2))
        torch.testing.assert_close(mean + std.view(-1, 1, 1, 1) * noise, expected, atol=1e-5, rtol=1e-5)
    assert std[0].item() == 0.0  # the final step (to alpha-bar 1) is deterministic


def test_lcm_mean_and_std_match_the_diffusers_step():
    scheduler = LCMScheduler(**SCHEDULE)
    sampler = LCMSampler(LCMScheduler(**SCHEDULE), 4)
    scheduler.set_timesteps(4)
    timesteps, prev = sampler.schedule()
    assert torch.equal(timesteps, scheduler.timesteps)
    torch.manual_seed(0)
    theirs, ours = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for t, t_prev in zip(timesteps, prev):
        sample, output = torch.randn(2, 1, 4, 4), torch.randn(2, 1, 4, 4)
        expected = scheduler.step(output, int(t), sample, generator=theirs).prev_sample
        mean, std = sampler.step(output, sample, t.expand(2), t_prev.expand(2))
        noise = randn_tensor(sample.shape, generator=ours) if t_prev >= 0 else torch.zeros_like(sample)
        torch.testing.assert_close(mean + std.view(-1, 1, 1, 1) * noise, expected, atol=1e-5, rtol=1e-5)
    assert std.tolist() == [0.0, 0.0]  # last step: deterministic


def test_recorded_step_log_probs_are_normal_densities_of_the_diffusers_update():
    policy = tiny_policy(timestep_spacing="leading")  # diffusers' own previous-timestep convention
    rollout = policy.sample(PROMPTS, 2)
    scheduler = policy.sampler.scheduler
    for i in range(rollout.num_steps):
        x, t = rollout.latents[:, i], int(rollout.timesteps[0, i])
        with torch.no_grad():
            output = policy.model(x, rollout.timesteps[:, i], class_labels=rollout.conditioning).sample
        mean = scheduler.step(output, t, x, eta=1.0, variance_noise=torch.zeros_like(x)).prev_sample
        prev = t - scheduler.config.num_train_timesteps // scheduler.num_inference_steps
        std = scheduler._get_variance(t, prev).sqrt().item()
        if std == 0:
            assert torch.all(rollout.step_log_probs[:, i] == 0)
            continue
        expected = torch.distributions.Normal(mean.double(), std).log_prob(rollout.latents[:, i + 1].double())
        torch.testing.assert_close(rollout.step_log_probs[:, i], expected.flatten(1).sum(1), atol=1e-2, rtol=1e-5)


# --- the policy --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sampler", ["ddim", "lcm"])
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
def test_recomputed_log_probs_equal_the_recorded_ones(sampler, guidance_scale):
    policy = tiny_policy(sampler, guidance_scale)
    rollout = policy.sample(PROMPTS, 2)
    recomputed = policy.token_log_probs(rollout)
    assert recomputed.shape == rollout.step_log_probs.shape == (4, 4)
    torch.testing.assert_close(recomputed.detach(), rollout.step_log_probs, atol=2e-3, rtol=1e-6)
    torch.testing.assert_close(policy.log_probs(rollout, reference=True), rollout.sampled_log_probs,
                               atol=5e-3, rtol=1e-6)
    if sampler == "lcm":
        assert torch.all(rollout.step_log_probs[:, -1] == 0)  # the deterministic last step
    assert torch.all(rollout.step_log_probs[:, 0] != 0)


def test_rollout_surface_grouping_and_select():
    policy = tiny_policy()
    rollout = policy.sample(PROMPTS, 3)
    assert len(rollout) == 6 and rollout.latents.shape == (6, 5, 1, 8, 8)
    assert rollout.conditioning.tolist() == [3, 3, 3, 7, 7, 7]  # n consecutive rows per prompt
    assert rollout.completion_mask.shape == (6, 4) and rollout.completion_mask.eq(1).all()
    assert rollout.has_eos.all() and rollout.lengths.tolist() == [4] * 6
    assert all(image.shape == (1, 8, 8) and 0 <= image.min() and image.max() <= 1 for image in rollout.completions)
    picked = rollout.select(torch.tensor([4, 1]))
    assert len(picked) == 2 and picked.conditioning.tolist() == [7, 3]
    assert torch.equal(picked.latents[0], rollout.latents[4]) and picked.completions[1] is rollout.completions[1]
    torch.testing.assert_close(policy.log_probs(picked).detach(), rollout.sampled_log_probs[[4, 1]], atol=5e-3, rtol=0)
    joined = concat_diffusion_rollouts([picked, rollout])
    assert len(joined) == 8 and torch.equal(joined.latents[2:], rollout.latents) and joined.completions[3] is rollout.completions[1]


def test_temperature_scales_the_noise_and_the_density():
    policy = tiny_policy()
    rollout = policy.sample(PROMPTS, 2, temperature=0.5)
    assert rollout.noise_scale.tolist() == [0.5] * 4
    torch.testing.assert_close(policy.log_probs(rollout).detach(), rollout.sampled_log_probs, atol=5e-3, rtol=0)
    rollout.noise_scale = torch.ones(4)
    assert (policy.log_probs(rollout).detach() - rollout.sampled_log_probs).abs().min() > 1.0


def test_reference_equals_policy_until_the_lora_weights_change():
    policy = tiny_policy(guidance_scale=2.0)
    rollout = policy.sample(PROMPTS, 2)
    before = policy.log_probs(rollout).detach()
    torch.testing.assert_close(policy.log_probs(rollout, reference=True), before, atol=0, rtol=0)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.05)
    after = policy.log_probs(rollout).detach()
    assert (after - before).abs().min() > 1e-2
    torch.testing.assert_close(policy.log_probs(rollout, reference=True), before, atol=0, rtol=0)
    assert policy.sample(PROMPTS, 1, reference=True).step_log_probs.shape == (2, 4)


def test_gradients_reach_the_lora_parameters_only():
    policy = tiny_policy(guidance_scale=2.0)
    rollout = policy.sample(PROMPTS, 2)
    policy.log_probs(rollout).sum().backward()
    graded = {n for n, p in policy.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert graded and all("lora_" in name for name in graded)
    assert all(not p.requires_grad for n, p in policy.model.named_parameters() if "lora_" not in n)


def test_without_lora_the_reference_is_a_frozen_copy_and_every_weight_trains():
    policy = tiny_policy(lora=False)
    rollout = policy.sample(PROMPTS, 2)
    policy.log_probs(rollout).sum().backward()
    assert all(p.grad is not None for p in policy.model.parameters() if p.requires_grad)
    assert not any(p.requires_grad for p in policy.reference_model.parameters())
    with torch.no_grad():
        next(policy.model.parameters()).add_(0.1)
    assert (policy.log_probs(rollout).detach() - policy.log_probs(rollout, reference=True)).abs().max() > 1e-3


def test_train_module_is_what_the_differentiable_pass_uses():
    policy = tiny_policy()
    rollout = policy.sample(PROMPTS, 1)
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args, **kwargs):
            calls.append(1)
            return self.inner(*args, **kwargs)

    policy.train_module = Spy(policy.model)
    policy.log_probs(rollout)
    assert calls


def test_prompts_that_name_no_single_digit_are_data_errors():
    policy = tiny_policy()
    policy.check_prompts(["a handwritten digit 0", "the digit nine, handwritten"])
    with pytest.raises(DataError, match="prompt 1: .*names no digit"):
        policy.check_prompts(["a handwritten digit 0", "a cat"])
    with pytest.raises(DataError, match="several digits"):
        digit_of_prompt("3 or 4")
    assert digit_of_prompt([{"role": "user", "content": "draw a five"}]) == 5


def test_save_pretrained_writes_the_adapter_and_scheduler(tmp_path):
    policy = tiny_policy()
    policy.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "ckpt" / "scheduler" / "scheduler_config.json").is_file()


def test_digit_prompt_splits():
    train, test = load_digit_prompts("train"), load_digit_prompts("test")
    assert set(train.column_names) == {"prompt", "digit"} and len(train) == 40 and len(test) == 20
    assert not set(train["prompt"]) & set(test["prompt"])
    rows = train.to_list() + test.to_list()
    assert all(digit_of_prompt(row["prompt"]) == row["digit"] for row in rows)
    with pytest.raises(DataError, match="no split"):
        load_digit_prompts("validation")


# --- rewards -----------------------------------------------------------------------------------------

def test_jpeg_rewards_shapes_and_a_flat_image_beats_noise():
    torch.manual_seed(0)
    flat, noise = torch.full((1, 16, 16), 0.5), torch.rand(1, 16, 16)
    color = torch.rand(3, 16, 16)
    scores = image_rewards.jpeg_compressibility(["a", "b", "c"], [flat, noise, color])
    assert len(scores) == 3 and all(isinstance(s, float) for s in scores)
    assert scores[0] > scores[1]
    assert image_rewards.jpeg_incompressibility(["a", "b"], [flat, noise]) == [-scores[0], -scores[1]]


def test_digit_quality_trains_caches_and_prefers_the_prompted_digit(tmp_path, monkeypatch):
    monkeypatch.setenv("REBEL_RL_CACHE", str(tmp_path))
    digit_rewards.load_digit_classifier.cache_clear()
    train = digit_rewards.train_digit_classifier
    monkeypatch.setattr(digit_rewards, "train_digit_classifier", lambda: train(epochs=3))
    images, labels = load_digit_images()
    with torch.no_grad():  # the first call trains the classifier, even inside an evaluation's no_grad
        right = digit_rewards.digit_quality([f"a digit {d}" for d in labels[:40].tolist()], list(images[:40]))
    wrong = digit_rewards.digit_quality(["x"] * 40, list(images[:40]), digit=((labels[:40] + 1) % 10).tolist())
    assert len(right) == 40 and all(0 <= p <= 1 for p in right)
    assert sum(right) / 40 > 0.6 and sum(right) / 40 > 3 * sum(wrong) / 40
    assert (tmp_path / "digit-classifier" / "model.safetensors").is_file()
    digit_rewards.load_digit_classifier.cache_clear()
    monkeypatch.setattr(digit_rewards, "train_digit_classifier", lambda: pytest.fail("retrained"))
    assert digit_rewards.digit_quality(["a 3"], [torch.zeros(3, 32, 32)])[0] >= 0  # cached; resized RGB input
    digit_rewards.load_digit_classifier.cache_clear()


# --- the latent-diffusion (GPU) setup on tiny random components ------------------------------------------

@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """Two diffusers checkpoint folders of tiny random components: an LCM with a guidance embedding
    (time_cond_proj_dim) and a plain Stable-Diffusion-like UNet, sharing the VAE and text encoder."""
    return {kind: save_tiny_pipeline(tmp_path_factory.mktemp(kind), kind) for kind in ("lcm", "sd")}


@pytest.mark.parametrize("kind, sampler, guidance_scale", [("lcm", "lcm", 4.0), ("sd", "ddim", 3.0)])
def test_latent_diffusion_policy_end_to_end(tiny_checkpoints, kind, sampler, guidance_scale, tmp_path):
    from rebel_rl.policies.diffusion.pipeline import load_latent_diffusion_policy

    policy = load_latent_diffusion_policy(str(tiny_checkpoints[kind]), device="cpu", sampler=sampler, num_steps=3,
                                          guidance_scale=guidance_scale, height=16, width=16, lora_r=4)
    assert policy.uses_guidance == (kind == "sd")  # the LCM takes guidance as an embedding instead of CFG
    rollout = policy.sample(["a red cat", "a dog"], 2)
    assert rollout.latents.shape == (4, 4, 4, 8, 8) and rollout.conditioning.shape == (4, 16, 32)
    assert all(image.shape == (3, 16, 16) and 0 <= image.min() and image.max() <= 1 for image in rollout.completions)
    logps = policy.log_probs(rollout)
    torch.testing.assert_close(logps.detach(), rollout.sampled_log_probs, atol=1e-2, rtol=1e-6)
    torch.testing.assert_close(policy.log_probs(rollout, reference=True), rollout.sampled_log_probs, atol=1e-2, rtol=1e-6)
    logps.sum().backward()
    graded = {n for n, p in policy.model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert graded and all("lora_" in name for name in graded)
    with pytest.raises(DataError, match="prompt 1 has .* tokens"):
        policy.check_prompts(["ok", "a very long prompt with many many words"])
    policy.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "adapter_model.safetensors").is_file()

    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from rebel_rl.rewards.aesthetic import AestheticMLP, AestheticReward

    clip_dir, head_file = save_tiny_clip(tmp_path)
    clip = CLIPVisionModelWithProjection.from_pretrained(clip_dir)
    processor = CLIPImageProcessor.from_pretrained(clip_dir)
    head = AestheticMLP()
    head.load_state_dict(torch.load(head_file, weights_only=True))
    reward = AestheticReward.from_pretrained(str(clip_dir), head=str(head_file))
    scores = reward(["a red cat"] * 4, rollout.completions)
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    pixels = processor(images=[image_rewards.to_pil(i) for i in rollout.completions], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = clip(pixel_values=pixels).image_embeds
        expected = head.eval()(embeds / embeds.norm(dim=-1, keepdim=True)).squeeze(-1)
    torch.testing.assert_close(torch.tensor(scores), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(RewardError, match="not found"):
        AestheticReward.from_pretrained(str(clip_dir), head=str(tmp_path / "missing.pth"))


# --- REBEL moves the reward ----------------------------------------------------------------------------

def compressibility_gain(training_seed: int, iterations: int = 20) -> float:
    """Manual REBEL iterations (2 samples per prompt, AdamW on the LoRA weights) on a tiny random UNet;
    the change of mean JPEG compressibility (kB) on fixed noise.

    JPEG sizes of 16x16 images vary by a few bytes, so eta is large (300): the regression asks for
    log-ratio differences of eta * (r - r'), a few nats. LoRA sits on the output convolution only, which
    keeps the likelihood-ratio gradient's noise low enough for 32 pairs per iteration; the policy learns
    to flatten its images (pushing pixels into saturation).
    """
    policy = tiny_policy(size=16, steps=4, seed=0, targets=["conv_out"])
    optimizer = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=3e-2)
    prompts = [f"a handwritten digit {i % 10}" for i in range(32)]

    def mean_reward() -> float:
        rollout = policy.sample(prompts, 2, generator=torch.Generator().manual_seed(99))
        return sum(image_rewards.jpeg_compressibility(prompts, rollout.completions)) / len(rollout)

    torch.manual_seed(training_seed)
    before = mean_reward()
    for _ in range(iterations):
        rollout = policy.sample(prompts, 2)
        rewards = torch.tensor(image_rewards.jpeg_compressibility(prompts, rollout.completions)).view(-1, 2)
        loss = rebel_loss(policy.log_probs(rollout).view(-1, 2), rollout.sampled_log_probs.view(-1, 2), rewards, 300.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return mean_reward() - before


def test_a_few_rebel_steps_raise_jpeg_compressibility():
    # One run is chaotic in the last bits of the arithmetic (a reward is a JPEG size in bytes): the same
    # seed gained +0.032 kB on one CPU and +0.003 on another. Three seeds, gains measured here: +0.002,
    # +0.064, +0.255 (mean +0.107).
    gains = [compressibility_gain(seed) for seed in range(3)]
    assert sum(gains) / len(gains) > 0.02, gains
