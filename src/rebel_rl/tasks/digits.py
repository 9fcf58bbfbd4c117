"""Built-in offline image task `digits`: a class-conditional diffusion model of handwritten digits.

Everything ships offline: the images are the 1,797 handwritten digits inside scikit-learn
(`sklearn.datasets.load_digits`, 8x8, 17 gray levels), upsampled to 16x16 and scaled to [-1, 1]. We
pre-train a small diffusers `UNet2DModel` (num_class_embeds=11: digits 0-9 and class 10 = "no label",
the unconditional branch of classifier-free guidance; labels are dropped 10% of the time) once, on the
CPU, and cache it in $REBEL_RL_CACHE/digits-denoiser (default ~/.cache/rebel_rl/digits-denoiser).

Prompts read "a handwritten digit 7"; the policy conditions on the one digit a prompt names (as a
numeral or a word). Train and test use disjoint prompt templates over the same ten digits.

`python -m rebel_rl.tasks.digits [grid.png]` pre-trains (if needed) and writes a grid of samples.
"""
from __future__ import annotations

import copy
import json
import math
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import datasets
import torch
import torch.nn.functional as F

from rebel_rl.errors import DataError
from rebel_rl.policies.pretrained import cache_dir

if TYPE_CHECKING:  # diffusers is imported only when a model is needed: loading prompts stays light
    from rebel_rl.policies.diffusion import ClassConditionalDiffusionPolicy

IMAGE_SIZE = 16
NULL_CLASS = 10
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TRAIN_TEMPLATES = (
    "a handwritten digit {d}",
    "the number {d}, written by hand",
    "a handwritten {w}",
    "a scanned digit {d}",
)
TEST_TEMPLATES = (
    "the digit {w}, handwritten",
    "a hand-drawn {d}",
)
SPLITS = {"train": TRAIN_TEMPLATES, "test": TEST_TEMPLATES}

# A small UNet: about 180k parameters, attention at 8x8. Pre-training it takes ~2 minutes on one thread.
DENOISER_CONFIG = {
    "sample_size": IMAGE_SIZE,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": (16, 32),
    "layers_per_block": 1,
    "down_block_types": ("DownBlock2D", "AttnDownBlock2D"),
    "up_block_types": ("AttnUpBlock2D", "UpBlock2D"),
    "num_class_embeds": NULL_CLASS + 1,
    "norm_num_groups": 8,
}
# The training noise schedule; samplers take its betas, prediction type and clipping.
NOISE_SCHEDULE = {
    "num_train_timesteps": 1000,
    "beta_schedule": "squaredcos_cap_v2",
    "prediction_type": "epsilon",
    "clip_sample": True,
}
# LoRA targets: attention projections, resnet convolutions and their timestep projections.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj")
PRETRAIN_STEPS = 600


def load_digit_prompts(split: str = "train") -> datasets.Dataset:
    """The `split` ("train" or "test") of digit prompts: columns `prompt` (str) and `digit` (int).

    Every template of the split is applied to every digit, digit-major; DataError for an unknown split.
    """
    if split not in SPLITS:
        raise DataError(f"the digits task has no split '{split}': use one of {', '.join(SPLITS)}")
    prompts, digits = [], []
    for digit in range(10):
        for template in SPLITS[split]:
            prompts.append(template.format(d=digit, w=DIGIT_WORDS[digit]))
            digits.append(digit)
    return datasets.Dataset.from_dict({"prompt": prompts, "digit": digits})


def digit_of_prompt(prompt: str | list) -> int:
    """The one digit a prompt names, as a numeral or an English word; DataError for none or several.

    A conversational prompt (a list of messages) is read from its last message.
    """
    text = prompt[-1]["content"] if isinstance(prompt, list) and prompt else prompt
    if not isinstance(text, str):
        raise DataError(f"a digits prompt must be text, got {type(text).__name__}")
    found = {int(c) for c in re.findall(r"\d", text)}
    found |= {i for i, word in enumerate(DIGIT_WORDS) if re.search(rf"\b{word}\b", text, re.IGNORECASE)}
    if len(found) != 1:
        named = "no digit" if not found else f"several digits ({', '.join(map(str, sorted(found)))})"
        raise DataError(f"the prompt {text!r} names {named}: name exactly one, e.g. 'a handwritten digit 7'")
    return found.pop()


def load_digit_images(size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All scikit-learn digits as images (1797, 1, size, size) in [0, 1] (bright ink) and labels (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return images, torch.tensor(digits.target, dtype=torch.long)


def build_denoiser():
    """A freshly initialised digits UNet (see DENOISER_CONFIG)."""
    from diffusers import UNet2DModel

    return UNet2DModel(**DENOISER_CONFIG)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@torch.enable_grad()  # first use may come from inside a caller's no_grad
def pretrain_denoiser(*, steps: int = PRETRAIN_STEPS, batch_size: int = 64, lr: float = 3e-3,
                      label_dropout: float = 0.1, seed: int = 0, log: Callable[[str], None] = _log):
    """Train the digits UNet by denoising score matching (epsilon loss) with an EMA of its weights.

    Returns (model with the EMA weights, info dict with steps, seconds and the final smoothed loss).
    Labels are replaced by NULL_CLASS with probability `label_dropout`, for classifier-free guidance.
    """
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        model = build_denoiser().train()
    images, labels = load_digit_images()
    images = images * 2 - 1
    noise_scheduler = DDPMScheduler(**NOISE_SCHEDULE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.05)
    ema = EMAModel(model.parameters(), decay=0.995)
    start, smoothed = time.perf_counter(), 0.0
    log(f"pre-training the digits denoiser once ({steps} steps, about 2 minutes on one CPU thread) ...")
    for step in range(steps):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        x0, y = images[index], labels[index].clone()
        y[torch.rand(batch_size, generator=generator) < label_dropout] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator)
        loss = F.mse_loss(model(noise_scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, noise)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        ema.step(model.parameters())
        smoothed = 0.98 * smoothed + 0.02 * loss.item()
        if (step + 1) % 100 == 0 or step + 1 == steps:
            log(f"  step {step + 1}/{steps}  loss {smoothed / (1 - 0.98 ** (step + 1)):.4f}  "
                f"{time.perf_counter() - start:.0f}s")
    ema.copy_to(model.parameters())
    info = {"steps": steps, "batch_size": batch_size, "seconds": round(time.perf_counter() - start, 1),
            "final_loss": round(smoothed / (1 - 0.98**steps), 4), "threads": torch.get_num_threads()}
    return model.eval(), info


def denoiser_dir() -> Path:
    """Where the pre-trained digits denoiser is cached."""
    return cache_dir() / "digits-denoiser"


def load_pretrained_denoiser(path: str | Path | None = None, log: Callable[[str], None] = _log):
    """The pre-trained digits UNet from `path` (default: the cache), pre-training and caching it first
    if it is not there. The cache is written atomically: a temp folder renamed into place."""
    from diffusers import UNet2DModel

    target = Path(path) if path is not None else denoiser_dir()
    if not (target / "config.json").is_file():
        model, info = pretrain_denoiser(log=log)

        def write(folder: str) -> None:
            model.save_pretrained(folder)
            (Path(folder) / "pretraining.json").write_text(json.dumps(info))

        save_atomically(target, write)
        log(f"cached the digits denoiser in {target} ({info['seconds']}s, final loss {info['final_loss']})")
    return UNet2DModel.from_pretrained(str(target)).eval()


def save_atomically(target: Path, write: Callable[[str], object]) -> Path:
    """Call `write(tmp_folder)`, then move the folder to `target`; keep an existing target (another
    process finished first) and never leave a half-written one."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        write(str(tmp))
        if target.exists():
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_digits_policy(*, sampler: str = "ddim", num_steps: int = 10, eta: float = 1.0,
                       guidance_scale: float = 2.0, temperature: float = 1.0, use_lora: bool = True,
                       lora_r: int = 8, lora_alpha: int = 16, lora_targets: tuple[str, ...] = LORA_TARGETS,
                       denoiser=None, device: str | torch.device = "cpu") -> ClassConditionalDiffusionPolicy:
    """The digits policy: the pre-trained UNet (or `denoiser`), a DDIM (eta) or LCM sampler with
    `num_steps` trailing-spaced steps, CFG at `guidance_scale`, and LoRA or a frozen reference copy."""
    from diffusers import DDPMScheduler

    from rebel_rl.policies.diffusion import (
        ClassConditionalDiffusionPolicy,
        add_lora,
        frozen_copy,
    )
    from rebel_rl.policies.diffusion_sampling import make_sampler

    # A given denoiser is copied: LoRA injection would otherwise change the caller's model in place.
    model = (copy.deepcopy(denoiser) if denoiser is not None else load_pretrained_denoiser()).to(device).eval()
    config = DDPMScheduler(**NOISE_SCHEDULE).config
    steps_sampler = make_sampler(sampler, config, num_steps, eta, timestep_spacing="trailing", set_alpha_to_one=True)
    reference = None
    if use_lora:
        model = add_lora(model, lora_targets, r=lora_r, alpha=lora_alpha)
    else:
        reference = frozen_copy(model)
    return ClassConditionalDiffusionPolicy(
        model, steps_sampler, prompt_to_class=digit_of_prompt, null_class=NULL_CLASS,
        guidance_scale=guidance_scale, temperature=temperature, reference_model=reference,
    )


def sample_grid(images: list[torch.Tensor], columns: int, pad: int = 2) -> torch.Tensor:
    """Tile equally-sized images (C, H, W) into one (C, H', W') grid with `pad` pixels between them."""
    channels, height, width = images[0].shape
    rows = math.ceil(len(images) / columns)
    grid = torch.full((channels, rows * (height + pad) + pad, columns * (width + pad) + pad), 0.5)
    for i, image in enumerate(images):
        top, left = pad + (i // columns) * (height + pad), pad + (i % columns) * (width + pad)
        grid[:, top:top + height, left:left + width] = image
    return grid


def save_sample_grid(policy: ClassConditionalDiffusionPolicy, path: str | Path, per_digit: int = 6,
                     seed: int = 0, scale: int = 3) -> Path:
    """Sample `per_digit` images of each digit (one column per digit) and save them as a PNG."""
    from PIL import Image

    prompts = [f"a handwritten digit {d}" for d in range(10)]
    rollout = policy.sample(prompts, per_digit, generator=torch.Generator(policy.device).manual_seed(seed))
    by_column = [rollout.completions[d * per_digit + k] for k in range(per_digit) for d in range(10)]
    grid = sample_grid(by_column, columns=10)
    pixels = (grid[0] * 255).round().byte().numpy()
    image = Image.fromarray(pixels)  # 2-D uint8: grayscale
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)
    return Path(path)


if __name__ == "__main__":
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else "digits_pretrained.png"
    started = time.perf_counter()
    policy = load_digits_policy(use_lora=False)
    _log(f"wrote {save_sample_grid(policy, out)} ({time.perf_counter() - started:.0f}s in all)")
