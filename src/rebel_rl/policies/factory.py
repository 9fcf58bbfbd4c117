"""Which policy a run trains: a causal LM or a diffusion model, picked from the config.

`model_type: auto` (the default) reads the source: `builtin:digits-denoiser`, a diffusers pipeline folder
(model_index.json or unet/) and a saved UNet folder are diffusion models; everything else (a hub id, a
transformers folder, `builtin:smollm2-135m-instruct`) is a causal LM. A hub id of a diffusion pipeline
(e.g. SimianLuo/LCM_Dreamshaper_v7) needs `model_type: diffusion`: nothing is fetched to find out.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import ConfigError, ModelError

DIGITS_DENOISER = "builtin:digits-denoiser"


def is_diffusion(config) -> bool:
    """Whether `config` names a diffusion policy (see the module docstring for `model_type: auto`)."""
    if config.model_type != "auto":
        return config.model_type == "diffusion"
    name = config.model_name_or_path
    if name == DIGITS_DENOISER:
        return True
    path = Path(name).expanduser()
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "unet").is_dir()
                              or _unet_class(path) is not None)


def _unet_class(path: Path) -> str | None:
    """The diffusers class of a saved UNet folder (its config.json `_class_name`), else None."""
    try:
        name = json.loads((path / "config.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        return None
    return name if name.startswith("UNet2D") else None


def check_policy_source(config) -> None:
    """Cheap checks before anything loads: the model source exists, and the algorithm and pair source
    suit the kind of policy. ModelError or ConfigError, one line."""
    if not is_diffusion(config):
        if config.algorithm == "ddpo":
            raise ConfigError("algorithm ddpo is PPO for diffusion policies: for a causal LM use ppo")
        from .pretrained import check_model_source

        check_model_source(config.model_name_or_path)
        return
    if config.algorithm == "ppo":
        raise ConfigError("algorithm ppo is token-level PPO with a value model for causal LMs: for a diffusion "
                          "policy use ddpo (DDPO-style PPO, no value model)")
    if getattr(config, "pair_source", "online") != "online":
        raise ConfigError("pair_source hybrid/offline reads written text completions: a diffusion policy samples "
                          "all of its images (use pair_source online)")
    name = config.model_name_or_path
    if name.startswith("builtin:") and name != DIGITS_DENOISER:
        raise ModelError(f"unknown built-in diffusion model {name!r}: the built-in one is {DIGITS_DENOISER}")
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise ModelError(f"model path does not exist: {name}")
    if path.is_dir() and not ((path / "unet").is_dir() or _unet_class(path) is not None):
        raise ModelError(f"diffusion model folder {name} has neither unet/ (a diffusers pipeline) nor a UNet "
                         "config.json (a saved denoiser)")


def load_policy(config, device: torch.device):
    """The policy `config` names, on `device`, with LoRA (reference = adapter disabled) or a frozen copy."""
    if not is_diffusion(config):
        from .causal_lm import load_causal_lm_policy

        return load_causal_lm_policy(config, device)
    return load_diffusion_policy(config, device)


def load_diffusion_policy(config, device: torch.device):
    """A diffusion policy from config: the built-in digits denoiser, a saved class-conditional UNet
    (prompts name a digit), or a Stable Diffusion / LCM pipeline (folder or hub id)."""
    from .builtin import builtin_model

    sampling = dict(sampler=config.sampler, num_steps=config.num_inference_steps, eta=config.ddim_eta,
                    guidance_scale=config.guidance_scale, temperature=config.temperature,
                    use_lora=config.use_lora, lora_r=config.lora_r, lora_alpha=config.lora_alpha)
    targets = config.lora_target_modules
    name = config.model_name_or_path
    path = Path(name).expanduser()
    if name == DIGITS_DENOISER or (path.is_dir() and _unet_class(path) is not None):
        digits = builtin_model(DIGITS_DENOISER)  # a saved UNet is a fine-tuned digits denoiser
        lora_targets = digits.lora_targets if targets == "all-linear" else _split(targets)
        denoiser = None
        if name != DIGITS_DENOISER:
            from diffusers import UNet2DModel

            denoiser = UNet2DModel.from_pretrained(str(path))
        return digits.build(**sampling, lora_targets=tuple(lora_targets), denoiser=denoiser, device=device)
    from .causal_lm import resolve_dtype
    from .diffusion_pipeline import ATTENTION_TARGETS, load_latent_diffusion_policy

    lora_targets = ATTENTION_TARGETS if targets == "all-linear" else _split(targets)
    dtype = resolve_dtype(config.dtype, torch.device(device))
    try:
        return load_latent_diffusion_policy(name, dtype=dtype, device=device, height=config.image_size,
                                            width=config.image_size, lora_targets=tuple(lora_targets), **sampling)
    except ValueError as exc:  # e.g. a size the VAE cannot decode
        raise ModelError(f"cannot build the diffusion policy from {name!r}: {exc}") from None


def _split(targets: str) -> list[str]:
    return [t.strip() for t in targets.split(",") if t.strip()]


def is_image_policy(policy) -> bool:
    """Whether `policy` samples images (a DiffusionPolicy) rather than text."""
    return hasattr(policy, "sampler") and hasattr(policy, "latent_shape")
