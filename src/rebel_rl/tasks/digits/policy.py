"""The `builtin:digits-denoiser` policy: the pre-trained UNet with a sampler, guidance and LoRA."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

from rebel_rl.tasks.digits.prompts import digit_of_prompt

# torch and diffusers are imported when a model is built: registering it stays light
if TYPE_CHECKING:
    import torch

    from rebel_rl.policies.diffusion.policy import ClassConditionalDiffusionPolicy

# LoRA targets: attention projections, resnet convolutions and their timestep projections.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj")


def load_digits_policy(
    *,
    sampler: str = "ddim",
    num_steps: int = 10,
    eta: float = 1.0,
    guidance_scale: float = 2.0,
    temperature: float = 1.0,
    use_lora: bool = True,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_targets: tuple[str, ...] = LORA_TARGETS,
    denoiser=None,
    device: str | torch.device = "cpu",
) -> ClassConditionalDiffusionPolicy:
    """The digits policy: the pre-trained UNet (or `denoiser`), a DDIM (eta) or LCM sampler with
    `num_steps` trailing-spaced steps, CFG at `guidance_scale`, and LoRA or a frozen reference
    copy."""
    from diffusers import DDPMScheduler

    from rebel_rl.policies.diffusion.policy import (
        ClassConditionalDiffusionPolicy,
        add_lora,
        frozen_copy,
    )
    from rebel_rl.policies.diffusion.sampling import make_sampler
    from rebel_rl.tasks.digits.denoiser import NOISE_SCHEDULE, NULL_CLASS, load_pretrained_denoiser

    # A given denoiser is copied: LoRA injection would otherwise change the caller's model in place.
    model = (
        (copy.deepcopy(denoiser) if denoiser is not None else load_pretrained_denoiser())
        .to(device)
        .eval()
    )
    config = DDPMScheduler(**NOISE_SCHEDULE).config
    steps_sampler = make_sampler(
        sampler, config, num_steps, eta, timestep_spacing="trailing", set_alpha_to_one=True
    )
    reference = None
    if use_lora:
        model = add_lora(model, lora_targets, r=lora_r, alpha=lora_alpha)
    else:
        reference = frozen_copy(model)
    return ClassConditionalDiffusionPolicy(
        model, steps_sampler, prompt_to_class=digit_of_prompt, null_class=NULL_CLASS,
        guidance_scale=guidance_scale, temperature=temperature, reference_model=reference,
    )


def is_saved_denoiser(folder: Path) -> bool:
    """Whether `folder` holds a saved digits denoiser, e.g. one a run fine-tuned: a diffusers
    UNet2D config.json (the class this task's policy loads). Reads one small JSON file."""
    try:
        name = json.loads((Path(folder) / "config.json").read_text()).get("_class_name", "")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(name, str) and name.startswith("UNet2D")
