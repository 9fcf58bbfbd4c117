"""Tiny random diffusion components for tests: no downloads, a second or two to build.

`save_tiny_pipeline(root, kind)` writes a diffusers-style folder (unet/, vae/, text_encoder/, tokenizer/,
scheduler/, model_index.json): `lcm` has a guidance-embedding UNet (time_cond_proj_dim, like
LCM_Dreamshaper_v7) and an LCMScheduler, `sd` a plain UNet and a DDIMScheduler. `save_tiny_clip` writes a
tiny CLIP vision tower + processor and an aesthetic MLP head for `AestheticReward.from_pretrained`.
"""
from __future__ import annotations

import json
import string
from pathlib import Path

import torch


def tiny_clip_tokenizer():
    """A character-level CLIPTokenizer (no merges) with a 16-token window."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for char in string.ascii_lowercase + string.digits + ",.-'":
        vocab.setdefault(char, len(vocab))
        vocab.setdefault(char + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16)


def save_tiny_pipeline(root: Path, kind: str = "lcm", seed: int = 0) -> Path:
    """A tiny text-to-image checkpoint folder at `root` (8x8 latents, 16x16 images); returns `root`."""
    from diffusers import AutoencoderKL, DDIMScheduler, LCMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    vae = AutoencoderKL(in_channels=3, out_channels=3, block_out_channels=(8, 16), latent_channels=4,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        norm_num_groups=4, sample_size=16)
    extra = {"time_cond_proj_dim": 16} if kind == "lcm" else {}
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=4, **extra)
    root = Path(root)
    for part, module in {"unet": unet, "vae": vae, "text_encoder": text_encoder, "tokenizer": tokenizer}.items():
        module.save_pretrained(str(root / part))
    scheduler = LCMScheduler if kind == "lcm" else DDIMScheduler
    scheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(str(root / "scheduler"))
    (root / "model_index.json").write_text(json.dumps({"_class_name": "LatentConsistencyModelPipeline"}))
    return root


def save_tiny_clip(root: Path, seed: int = 0) -> tuple[Path, Path]:
    """A tiny CLIP vision tower + processor folder and an aesthetic head file; returns (clip folder, head file)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    from rebel_rl.rewards.aesthetic import AestheticMLP

    torch.manual_seed(seed)
    clip = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                          num_attention_heads=4, image_size=32, patch_size=8,
                                                          projection_dim=768))
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    root = Path(root)
    clip.save_pretrained(root / "clip")
    processor.save_pretrained(root / "clip")
    torch.save(AestheticMLP().state_dict(), root / "head.pth")
    return root / "clip", root / "head.pth"


def save_tiny_denoiser(root: Path, size: int = 16, seed: int = 0) -> Path:
    """A tiny random class-conditional UNet2DModel (classes 0-9 and 10 = unconditional) saved at `root`."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    UNet2DModel(
        sample_size=size, in_channels=1, out_channels=1, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        num_class_embeds=11, norm_num_groups=4, attention_head_dim=8,
    ).save_pretrained(str(root))
    return Path(root)
