"""The diffusion kind of policy: how a model source is recognised as one, checked, and loaded.

`model_type: auto` (the default) reads the source: a built-in diffusion model a task registered
(models/builtin.py, kind "diffusion", e.g. `builtin:digits-denoiser`), a diffusers pipeline
folder (model_index.json or unet/) and a folder that task recognises as a saved copy of its model
are diffusion models. A hub id of a
diffusion pipeline (e.g. SimianLuo/LCM_Dreamshaper_v7) needs `model_type: diffusion`: nothing is
fetched to find out.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import ModelError, first_line
from ...hub import check_hub_id
from ...models.builtin import builtin_model, builtin_names, builtin_of_folder
from ...models.pretrained import model_load_errors
from ..base import PolicyKind
from .policy import DiffusionPolicy

KIND = "diffusion"


def looks_like_diffusion(model) -> bool:
    """Whether the source of `model` (a ModelConfig) is a diffusion model (see the module
    docstring)."""
    name = model.model_name_or_path
    if name in builtin_names(KIND):
        return True
    path = Path(name).expanduser()
    return path.is_dir() and ((path / "model_index.json").is_file() or (path / "unet").is_dir()
                              or builtin_of_folder(path, KIND) is not None)


def check_diffusion_source(model) -> None:
    """Cheap checks before anything loads: a built-in name exists, a path exists and holds a
    UNet."""
    name = model.model_name_or_path
    builtins = builtin_names(KIND)
    if name.startswith("builtin:") and name not in builtins:
        raise ModelError(
            f"unknown built-in diffusion model {name!r}: the built-in ones are "
            f"{', '.join(builtins)}"
        )
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise ModelError(f"model path does not exist: {name}")
    if path.is_dir() and not ((path / "unet").is_dir() or builtin_of_folder(path, KIND)):
        raise ModelError(
            f"diffusion model folder {name} has neither unet/ (a diffusers pipeline) nor a UNet "
            "config.json (a saved denoiser)"
        )
    # a hub id: at once when the hub cannot be reached
    if not path.exists() and name not in builtins:
        check_hub_id(
            name, "model", ModelError, f"give a local diffusers folder or {' or '.join(builtins)}"
        )


def load_diffusion_policy(model, sampling, device: torch.device, max_prompt_length: int = 0):
    """A diffusion policy from its config groups (`model`: weights and LoRA; `sampling`: the
    sampler): the built-in digits denoiser, a saved class-conditional UNet (prompts name a digit),
    or a Stable Diffusion / LCM pipeline (folder or hub id). Prompts are not tokenized, so
    `max_prompt_length` is not read."""
    settings = dict(
        sampler=sampling.sampler,
        num_steps=sampling.num_inference_steps,
        eta=sampling.ddim_eta,
        guidance_scale=sampling.guidance_scale,
        temperature=sampling.temperature,
        use_lora=model.use_lora,
        lora_r=model.lora_r,
        lora_alpha=model.lora_alpha,
    )
    targets = model.lora_target_modules
    name = model.model_name_or_path
    path = Path(name).expanduser()
    builtin = builtin_model(name) if name in builtin_names(KIND) else builtin_of_folder(path, KIND)
    if builtin is not None:  # a task's built-in model, or a saved (fine-tuned) copy of it
        lora_targets = builtin.lora_targets if targets == "all-linear" else _split(targets)
        denoiser = None
        if not name.startswith("builtin:"):
            from diffusers import UNet2DModel

            try:
                denoiser = UNet2DModel.from_pretrained(str(path))
            except model_load_errors() as exc:
                raise ModelError(
                    f"cannot load the denoiser in {name!r}: {first_line(exc)}"
                ) from None
        return builtin.build(
            **settings, lora_targets=tuple(lora_targets), denoiser=denoiser, device=device
        )
    from ..causal_lm.policy import resolve_dtype
    from .pipeline import ATTENTION_TARGETS, load_latent_diffusion_policy

    lora_targets = ATTENTION_TARGETS if targets == "all-linear" else _split(targets)
    dtype = resolve_dtype(model.dtype, torch.device(device))
    try:
        return load_latent_diffusion_policy(
            name,
            dtype=dtype,
            device=device,
            height=sampling.image_size,
            width=sampling.image_size,
            lora_targets=tuple(lora_targets),
            **settings,
        )
    except ValueError as exc:  # e.g. a size the VAE cannot decode
        raise ModelError(f"cannot build the diffusion policy from {name!r}: {exc}") from None


def _split(targets: str) -> list[str]:
    return [t.strip() for t in targets.split(",") if t.strip()]


# The kind, as factory.py registers it.
POLICY_KIND = PolicyKind(KIND, DiffusionPolicy.supports, looks_like_diffusion,
                         check_diffusion_source, load_diffusion_policy)
