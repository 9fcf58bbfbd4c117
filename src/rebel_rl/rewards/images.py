"""Offline image rewards, TRL-style: `f(prompts, completions, **columns) -> list[float]`.

Completions are images, each a float tensor (C, H, W) in [0, 1] (what `DiffusionPolicy.sample`
gives).

* `jpeg_compressibility`: minus the JPEG size in kB at quality 95 (DDPO's compressibility reward);
  `jpeg_incompressibility` is plus the size.

The `digits` task's `digit_quality` reward is tasks/digits/quality.py.
"""
from __future__ import annotations

import io

import torch

JPEG_QUALITY = 95


def to_pil(image: torch.Tensor):
    """A (C, H, W) tensor in [0, 1] (C = 1 or 3) as an 8-bit PIL image (grayscale or RGB)."""
    from PIL import Image

    pixels = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
    if pixels.shape[0] == 1:
        return Image.fromarray(pixels[0].numpy())
    return Image.fromarray(pixels.permute(1, 2, 0).numpy())


def jpeg_size_kb(image: torch.Tensor, quality: int = JPEG_QUALITY) -> float:
    """Size in kB (1000 bytes) of the image saved as JPEG at `quality`."""
    buffer = io.BytesIO()
    to_pil(image).save(buffer, format="JPEG", quality=quality)
    return buffer.tell() / 1000


def jpeg_compressibility(prompts: list, completions: list[torch.Tensor], **columns) -> list[float]:
    """Minus the JPEG size in kB of each image: smaller files (flatter, smoother images) score
    higher."""
    return [-jpeg_size_kb(image) for image in completions]


def jpeg_incompressibility(
    prompts: list, completions: list[torch.Tensor], **columns
) -> list[float]:
    """The JPEG size in kB of each image: more detailed, noisier images score higher."""
    return [jpeg_size_kb(image) for image in completions]
