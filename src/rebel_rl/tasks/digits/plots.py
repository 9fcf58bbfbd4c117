"""Sample grids: images tiled into one, and a PNG of a digits policy's samples (one column per
digit)."""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from rebel_rl.policies.diffusion.policy import ClassConditionalDiffusionPolicy


def sample_grid(images: list[torch.Tensor], columns: int, pad: int = 2) -> torch.Tensor:
    """Tile equally-sized images (C, H, W) into one (C, H', W') grid with `pad` pixels between
    them."""
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
    rollout = policy.sample(
        prompts, per_digit, generator=torch.Generator(policy.device).manual_seed(seed)
    )
    by_column = [
        rollout.completions[d * per_digit + k] for k in range(per_digit) for d in range(10)
    ]
    grid = sample_grid(by_column, columns=10)
    pixels = (grid[0] * 255).round().byte().numpy()
    image = Image.fromarray(pixels)  # 2-D uint8: grayscale
    image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
    image.save(path)
    return Path(path)
