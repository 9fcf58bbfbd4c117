"""The `digit_quality` reward of the `digits` task: the probability, under a small CNN trained by us
on the scikit-learn digits, that an image shows the digit its prompt names (an offline stand-in for
an aesthetic/quality predictor). The classifier trains once in a few seconds and is cached in
$REBEL_RL_CACHE/digit-classifier (default ~/.cache/rebel_rl/digit-classifier).
"""
from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rebel_rl.models.pretrained import cache_dir
from rebel_rl.tasks.digits.cache import save_atomically
from rebel_rl.tasks.digits.images import load_digit_images
from rebel_rl.tasks.digits.prompts import digit_of_prompt

CLASSIFIER_SIZE = 16


def build_digit_classifier() -> nn.Sequential:
    """A small CNN on 1x16x16 images in [0, 1] giving 10 digit logits (about 40k parameters)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )


def _augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random shifts of up to one pixel and light noise, so the classifier tolerates generated
    digits."""
    padded = F.pad(images, (1, 1, 1, 1))
    dx, dy = torch.randint(0, 3, (2,), generator=generator).tolist()
    shifted = padded[..., dy:dy + images.shape[-2], dx:dx + images.shape[-1]]
    return (shifted + 0.05 * torch.randn(shifted.shape, generator=generator)).clamp(0, 1)


@torch.enable_grad()  # the first reward call trains it, possibly inside an evaluation's no_grad
def train_digit_classifier(
    *, epochs: int = 15, batch_size: int = 64, seed: int = 0
) -> tuple[nn.Sequential, dict]:
    """Train the classifier on 90% of the scikit-learn digits; return it (eval mode) and its
    held-out accuracy."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(seed)
        model = build_digit_classifier()
    images, labels = load_digit_images(CLASSIFIER_SIZE)
    order = torch.randperm(len(images), generator=generator)
    held_out, train = order[: len(order) // 10], order[len(order) // 10:]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in train[torch.randperm(len(train), generator=generator)].split(batch_size):
            loss = F.cross_entropy(model(_augment(images[batch], generator)), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(images[held_out]).argmax(-1) == labels[held_out]).float().mean().item()
    return model, {
        "held_out_accuracy": round(accuracy, 4),
        "seconds": round(time.perf_counter() - start, 1),
    }


def classifier_dir() -> Path:
    """Where the digit classifier is cached."""
    return cache_dir() / "digit-classifier"


@functools.lru_cache(maxsize=1)
def load_digit_classifier(path: str | None = None) -> nn.Sequential:
    """The cached digit classifier (trained and cached atomically on first use), in eval mode."""
    from safetensors.torch import load_file, save_file

    target = Path(path) if path is not None else classifier_dir()
    weights = target / "model.safetensors"
    if not weights.is_file():
        print(
            "training the digit classifier for the digit_quality reward (once, a few seconds) ...",
            file=sys.stderr,
            flush=True,
        )
        model, info = train_digit_classifier()

        def write(folder: str) -> None:
            save_file(model.state_dict(), str(Path(folder) / "model.safetensors"))
            (Path(folder) / "training.json").write_text(json.dumps(info))

        save_atomically(target, write)
    model = build_digit_classifier()
    model.load_state_dict(load_file(str(weights)))
    return model.eval().requires_grad_(False)


def _classifier_input(images: list[torch.Tensor]) -> torch.Tensor:
    """Images (C, H, W) in [0, 1] -> (B, 1, 16, 16) grayscale, resized if needed."""
    batch = torch.stack([image.detach().float().cpu().mean(0, keepdim=True) for image in images])
    if batch.shape[-1] != CLASSIFIER_SIZE or batch.shape[-2] != CLASSIFIER_SIZE:
        batch = F.interpolate(
            batch, size=CLASSIFIER_SIZE, mode="bilinear", antialias=True, align_corners=False
        )
    return batch.clamp(0, 1)


def digit_quality(prompts: list, completions: list[torch.Tensor], digit: list[int] | None = None,
                  **columns) -> list[float]:
    """The classifier's probability that each image shows its target digit: the `digit` column when
    the dataset has one, else the digit its prompt names."""
    targets = list(digit) if digit is not None else [digit_of_prompt(p) for p in prompts]
    if len(targets) != len(completions):
        raise ValueError(
            f"{len(completions)} images but {len(targets)} prompts/digits: give one per image"
        )
    classifier = load_digit_classifier()  # outside no_grad: the first call trains it
    with torch.no_grad():
        probs = classifier(_classifier_input(completions)).softmax(-1)
    return probs[torch.arange(len(targets)), torch.tensor(targets)].tolist()
