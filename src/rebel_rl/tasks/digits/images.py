"""The scikit-learn handwritten digits as image tensors: what the denoiser and the classifier train
on."""
from __future__ import annotations

import torch
import torch.nn.functional as F

IMAGE_SIZE = 16


def load_digit_images(size: int = IMAGE_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """All scikit-learn digits as images (1797, 1, size, size) in [0, 1] (bright ink) and labels
    (1797,)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=size, mode="bilinear", align_corners=False).clamp(0, 1)
    return images, torch.tensor(digits.target, dtype=torch.long)
