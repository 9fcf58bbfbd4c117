"""The digits UNet: its configuration, its pre-training by denoising score matching, and its
cache."""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from rebel_rl.models.pretrained import cache_dir
from rebel_rl.tasks.digits.cache import save_atomically
from rebel_rl.tasks.digits.images import IMAGE_SIZE, load_digit_images

NULL_CLASS = 10

# A small UNet: about 180k parameters, attention at 8x8. Pre-training it takes ~2 minutes on one
# thread.
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
PRETRAIN_STEPS = 600


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
    Labels are replaced by NULL_CLASS with probability `label_dropout`, for classifier-free
    guidance.
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
    log(
        f"pre-training the digits denoiser once ({steps} steps, about 2 minutes on one CPU thread) "
        f"..."
    )
    for step in range(steps):
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        x0, y = images[index], labels[index].clone()
        y[torch.rand(batch_size, generator=generator) < label_dropout] = NULL_CLASS
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(
            0, noise_scheduler.config.num_train_timesteps, (batch_size,), generator=generator
        )
        loss = F.mse_loss(
            model(noise_scheduler.add_noise(x0, noise, t), t, class_labels=y).sample, noise
        )
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
    info = {
        "steps": steps,
        "batch_size": batch_size,
        "seconds": round(time.perf_counter() - start, 1),
        "final_loss": round(smoothed / (1 - 0.98**steps), 4),
        "threads": torch.get_num_threads(),
    }
    return model.eval(), info


def denoiser_dir() -> Path:
    """Where the pre-trained digits denoiser is cached."""
    return cache_dir() / "digits-denoiser"


def load_pretrained_denoiser(path: str | Path | None = None, log: Callable[[str], None] = _log):
    """The pre-trained digits UNet from `path` (default: the cache), pre-training and caching it
    first if it is not there. The cache is written atomically: a temp folder renamed into place."""
    from diffusers import UNet2DModel

    target = Path(path) if path is not None else denoiser_dir()
    if not (target / "config.json").is_file():
        model, info = pretrain_denoiser(log=log)

        def write(folder: str) -> None:
            model.save_pretrained(folder)
            (Path(folder) / "pretraining.json").write_text(json.dumps(info))

        save_atomically(target, write)
        log(
            f"cached the digits denoiser in {target} ({info['seconds']}s, final loss "
            f"{info['final_loss']})"
        )
    return UNet2DModel.from_pretrained(str(target)).eval()
