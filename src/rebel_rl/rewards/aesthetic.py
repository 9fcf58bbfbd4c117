"""The LAION aesthetic predictor as a reward (the REBEL and DDPO image experiments' reward).

Score = MLP(normalize(CLIP ViT-L/14 image embedding)), with the published MLP head
768-1024-128-64-16-1 ("improved aesthetic predictor", sac+logos+ava1-l14-linearMSE; the same weights
TRL hosts as trl-lib/ddpo-aesthetic-predictor/aesthetic-model.pth). The image embedding is CLIP's
projected pooled output (`CLIPVisionModelWithProjection.image_embeds` =
`CLIPModel.get_image_features`), and images go through the checkpoint's `CLIPImageProcessor` as
8-bit RGB, as in DDPO.
"""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from torch import nn

from ..errors import RewardError, first_line
from .images import to_pil

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
DEFAULT_HEAD = "trl-lib/ddpo-aesthetic-predictor:aesthetic-model.pth"


class AestheticMLP(nn.Module):
    """The LAION head; layer indices match the published state dict (layers.0, .2, .4, .6, .7)."""

    def __init__(self, in_features: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(in_features, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


def load_head_state_dict(source: str) -> dict[str, torch.Tensor]:
    """Head weights from a local .pth/.safetensors file, or from "hub_repo:filename" on the Hugging
    Face hub."""
    path = Path(source).expanduser()
    if not path.is_file():
        if ":" not in source:
            raise RewardError(
                f"aesthetic head weights not found: {source} (give a file or 'hub_repo:filename')"
            )
        from huggingface_hub import hf_hub_download

        repo, filename = source.rsplit(":", 1)
        try:
            path = Path(hf_hub_download(repo, filename))
        # offline, missing repo or file (hub errors are OSErrors)
        except (OSError, ValueError) as exc:
            raise RewardError(
                f"cannot fetch aesthetic head {source}: {type(exc).__name__}"
            ) from None
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(str(path), map_location="cpu", weights_only=True)


class AestheticReward:
    """A TRL-style reward `f(prompts, completions, **columns) -> list[float]` on (C, H, W) images in
    [0, 1]."""

    __name__ = "aesthetic"

    def __init__(
        self,
        clip: nn.Module,
        processor,
        head: AestheticMLP,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        self.clip = clip.to(device).requires_grad_(False).eval()
        self.processor = processor
        self.head = head.to(device).requires_grad_(False).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(
        cls,
        clip: str = DEFAULT_CLIP,
        head: str = DEFAULT_HEAD,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> AestheticReward:
        """CLIP vision tower + processor from `clip` (folder or hub id) and the MLP head from
        `head`."""
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

        try:
            model = CLIPVisionModelWithProjection.from_pretrained(clip, dtype=dtype)
            processor = CLIPImageProcessor.from_pretrained(clip)
        except (OSError, ValueError) as exc:
            raise RewardError(f"cannot load CLIP model {clip!r}: {first_line(exc)}") from None
        mlp = AestheticMLP(model.config.projection_dim)
        try:
            mlp.load_state_dict(load_head_state_dict(head))
        except RuntimeError as exc:
            raise RewardError(f"aesthetic head {head} does not fit the 768-1024-128-64-16-1 MLP: "
                              f"{first_line(exc)}") from None
        return cls(model, processor, mlp.to(dtype), device=device)

    @torch.no_grad()
    def scores(self, images: list[torch.Tensor]) -> torch.Tensor:
        """Aesthetic scores (N,) of images (C, H, W) in [0, 1]."""
        out = []
        for start in range(0, len(images), self.batch_size):
            pils = [to_pil(image).convert("RGB") for image in images[start:start + self.batch_size]]
            pixels = self.processor(images=pils, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, dtype=next(self.clip.parameters()).dtype)
            embeddings = self.clip(pixel_values=pixels).image_embeds
            embeddings = embeddings / torch.linalg.vector_norm(embeddings, dim=-1, keepdim=True)
            out.append(self.head(embeddings).squeeze(-1).float().cpu())
        return torch.cat(out)

    def __call__(self, prompts: list, completions: list[torch.Tensor], **columns) -> list[float]:
        return self.scores(completions).tolist()


@functools.lru_cache(maxsize=1)
def default_aesthetic_reward() -> AestheticReward:
    """The `aesthetic` builtin: CLIP ViT-L/14 and the LAION head from the hub (or the local hub
    cache), loaded once, on the GPU when there is one."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    return AestheticReward.from_pretrained(DEFAULT_CLIP, DEFAULT_HEAD, device=device, dtype=dtype)
