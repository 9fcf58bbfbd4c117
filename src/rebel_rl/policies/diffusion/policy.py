"""A diffusion model as a policy: sample stochastic denoising trajectories and score them.

An "action sequence" is the trajectory x_T -> x_{t_1} -> ... -> x_0 of a stochastic sampler
(`sampling.py`), and log pi(y|x) is the sum over steps of the Gaussian log-density of each
transition, as in DDPO (Black et al. 2023). `sample` records every latent, the timesteps and the
per-step log-probs; `token_log_probs` recomputes the per-step log-densities of the stored
transitions under the current parameters (differentiable), so the REBEL loss of
`algorithms/rebel.py` applies as is.

`DiffusionPolicy` holds everything generic; subclasses say how prompts become conditioning, how the
denoiser is called, and how final latents become images: `ClassConditionalDiffusionPolicy` here
(a pixel-space UNet2DModel with class labels, used by the offline digits task) and
`LatentDiffusionPolicy` in `pipeline.py` (Stable Diffusion / LCM checkpoints).
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import torch

from ...errors import DataError
from ..base import Policy, PolicySupports, Rollout, unwrapped
from .sampling import (
    DDIMSampler,
    LCMSampler,
    apply_guidance,
    gaussian_log_density,
)


@dataclass
class DiffusionRollout(Rollout):
    """Sampled trajectories, `n` consecutive rows per prompt.

    `latents[:, 0]` is the initial noise x_T and `latents[:, -1]` the final sample x_0; step i goes
    from `latents[:, i]` at `timesteps[:, i]` to `latents[:, i + 1]` at `prev_timesteps[:, i]` (-1:
    final).
    """

    latents: torch.Tensor  # (N, T + 1, *latent_shape) float32
    timesteps: torch.Tensor  # (N, T) long
    prev_timesteps: torch.Tensor  # (N, T) long
    conditioning: torch.Tensor  # (N, ...) class ids or text embeddings
    step_log_probs: torch.Tensor  # (N, T) float64, recorded at sampling; 0 on deterministic steps
    noise_scale: torch.Tensor  # (N,) the temperature the noise std was multiplied by
    completions: list[torch.Tensor]  # N images (C, H, W) in [0, 1] on the CPU: what rewards receive

    @property
    def num_steps(self) -> int:
        return self.timesteps.shape[1]

    @property
    def completion_mask(self) -> torch.Tensor:
        """Ones (N, T): every denoising step is part of the trajectory."""
        return torch.ones(self.timesteps.shape, dtype=torch.long, device=self.timesteps.device)

    @property
    def has_eos(self) -> torch.Tensor:
        """All True: a trajectory always finishes."""
        return torch.ones(len(self), dtype=torch.bool, device=self.timesteps.device)

    @property
    def sampled_log_probs(self) -> torch.Tensor:
        """log pi_t of each trajectory (N,) as recorded while sampling."""
        return self.step_log_probs.sum(-1)

    @property
    def recorded_token_log_probs(self) -> torch.Tensor:
        """log pi_t of each step (N, T), recorded while sampling (the same numbers a recomputation
        gives)."""
        return self.step_log_probs

    def conditioning_rows(self) -> torch.Tensor:
        """What each row conditions on: equal for rows of the same prompt, and for different prompts
        the model cannot tell apart (e.g. two phrasings of one digit)."""
        return self.conditioning


def concat_diffusion_rollouts(rollouts: list[DiffusionRollout]) -> DiffusionRollout:
    """The rows of several rollouts of the same sampler (same number of steps and latent shape), in
    order."""
    values = {}
    for f in fields(DiffusionRollout):
        parts = [getattr(r, f.name) for r in rollouts]
        values[f.name] = (
            [item for part in parts for item in part]
            if isinstance(parts[0], list)
            else torch.cat(parts)
        )
    return DiffusionRollout(**values)


class DiffusionPolicy(Policy):
    """A denoiser, a stochastic sampler, classifier-free guidance, and a reference for the KL term.

    Subclasses implement `encode_prompts`, `null_conditioning`, `denoise` and `decode`. The
    reference is the LoRA adapter disabled when `model` is a peft model, else `reference_model` (a
    frozen copy). `guidance_scale` > 1 runs each step on [conditional; unconditional] and combines
    them as u + g (c - u); `temperature` multiplies every step's noise std (1.0 = the sampler as
    defined).
    """

    supports = PolicySupports(
        description="a diffusion policy",
        default_temperature=1.0,
        sharding=False,
        dataset_completions=False,
        images=True,
    )

    def __init__(
        self,
        model: torch.nn.Module,
        sampler: DDIMSampler | LCMSampler,
        *,
        latent_shape: tuple[int, ...],
        guidance_scale: float = 1.0,
        temperature: float = 1.0,
        reference_model: torch.nn.Module | None = None,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        super().__init__(model, temperature=temperature, reference_model=reference_model)
        self.sampler = sampler
        self.latent_shape = tuple(latent_shape)
        self.guidance_scale = guidance_scale

    # --- what a subclass provides -------------------------------------------------------------
    def encode_prompts(self, prompts: list) -> torch.Tensor:
        """Conditioning for each prompt, (B, ...) on `device`; DataError for a prompt it cannot
        use."""
        raise NotImplementedError

    def null_conditioning(self, batch: int) -> torch.Tensor:
        """The unconditional ("dropped") conditioning for `batch` rows, used by classifier-free
        guidance."""
        raise NotImplementedError

    def denoise(
        self, module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, conditioning: torch.Tensor
    ) -> torch.Tensor:
        """One call of the denoiser `module` on latents x (B, ...) at timesteps t (B,)."""
        raise NotImplementedError

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Final latents (B, ...) to images (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    # --- generic machinery ----------------------------------------------------------------------
    @property
    def uses_guidance(self) -> bool:
        return self.guidance_scale != 1.0

    def check_prompts(self, prompts: list) -> None:
        """Encode every prompt once up front, so one the policy cannot condition on stops the run
        early."""
        self.encode_prompts(prompts)

    def predict(
        self, module: torch.nn.Module, x: torch.Tensor, t: torch.Tensor, conditioning: torch.Tensor
    ) -> torch.Tensor:
        """The (guided) model output in float32; with guidance, one batched call on [cond;
        uncond]."""
        if not self.uses_guidance:
            return self.denoise(module, x, t, conditioning).float()
        both = torch.cat([conditioning, self.null_conditioning(len(x)).to(conditioning.dtype)])
        output = self.denoise(module, torch.cat([x, x]), torch.cat([t, t]), both).float()
        return apply_guidance(output, self.guidance_scale)

    @torch.no_grad()
    def sample(
        self,
        prompts: list,
        n: int,
        *,
        reference: bool = False,
        temperature: float | None = None,
        generator: torch.Generator | None = None,
    ) -> DiffusionRollout:
        """Sample `n` trajectories per prompt (rows grouped by prompt) from the policy or the
        reference."""
        temperature = self.temperature if temperature is None else temperature
        device = self.device
        conditioning = self.encode_prompts(prompts).repeat_interleave(n, dim=0)
        rows = conditioning.shape[0]
        timesteps, prev_timesteps = (s.to(device) for s in self.sampler.schedule())
        x = torch.randn((rows, *self.latent_shape), generator=generator, device=device)
        latents, logps = [x], []
        with self.sampling_model(reference) as module, self.autocast():
            for t, t_prev in zip(timesteps, prev_timesteps):
                t, t_prev = t.expand(rows), t_prev.expand(rows)
                mean, std = self.sampler.step(
                    self.predict(module, x, t, conditioning), x, t, t_prev
                )
                std = std * temperature
                noise = torch.randn(x.shape, generator=generator, device=device)
                x = mean + std.view(-1, *([1] * (x.dim() - 1))) * noise
                logps.append(gaussian_log_density(x, mean, std))
                latents.append(x)
            images = self.decode(x).float().clamp(0, 1).cpu()
        return DiffusionRollout(
            latents=torch.stack(latents, dim=1),
            timesteps=timesteps.expand(rows, -1).clone(),
            prev_timesteps=prev_timesteps.expand(rows, -1).clone(),
            conditioning=conditioning,
            step_log_probs=torch.stack(logps, dim=1),
            noise_scale=torch.full((rows,), float(temperature), device=device),
            completions=list(images),
        )

    def token_log_probs(self, rollout: DiffusionRollout, *, reference: bool = False,
                        steps: slice | torch.Tensor | None = None) -> torch.Tensor:
        """Per-step log-densities (N, T) of the stored transitions, float64; differentiable unless
        `reference`.

        All (row, step) pairs go through the denoiser as one batch; pass `steps` (a slice or index
        tensor over the T steps) to compute only those columns, e.g. to bound memory on large
        models.
        """
        if reference:
            with torch.no_grad(), self.sampling_model(reference=True) as module, self.autocast():
                return self._step_log_probs(module, rollout, steps)
        return self._step_log_probs(self.train_module, rollout, steps)

    def _step_log_probs(
        self, module: torch.nn.Module, rollout: DiffusionRollout, steps
    ) -> torch.Tensor:
        index = torch.arange(rollout.num_steps, device=rollout.timesteps.device)
        index = index if steps is None else index[steps]
        rows, count = len(rollout), len(index)
        x = rollout.latents[:, index].flatten(0, 1)
        x_next = rollout.latents[:, index + 1].flatten(0, 1)
        t = rollout.timesteps[:, index].flatten()
        t_prev = rollout.prev_timesteps[:, index].flatten()
        conditioning = rollout.conditioning.repeat_interleave(count, dim=0)
        mean, std = self.sampler.step(self.predict(module, x, t, conditioning), x, t, t_prev)
        std = std * rollout.noise_scale.repeat_interleave(count).to(std.device)
        return gaussian_log_density(x_next, mean, std).view(rows, count)

    def concat(self, rollouts: list[DiffusionRollout]) -> DiffusionRollout:
        return concat_diffusion_rollouts(rollouts)

    def describe(self, completion: torch.Tensor) -> str:
        """An image as logs keep it: `image CxHxW`."""
        return "image " + "x".join(str(s) for s in completion.shape)

    def save_pretrained(self, path: str | Path, model: torch.nn.Module | None = None,
                        state_dict: dict | None = None) -> None:
        """Save the denoiser (the LoRA adapter only when peft-wrapped; `model` instead, e.g. a
        merged one) and the sampler's scheduler. `state_dict` is not taken: diffusion policies do
        not shard."""
        path = Path(path)
        (model or self.model).save_pretrained(str(path))
        self.sampler.scheduler.save_pretrained(str(path / "scheduler"))


class ClassConditionalDiffusionPolicy(DiffusionPolicy):
    """A pixel-space `UNet2DModel` with `num_class_embeds`, conditioned on a class id per prompt.

    `prompt_to_class` maps a prompt to its class (raising DataError when it names none);
    `null_class` is the class the model was trained on for dropped labels, used as the unconditional
    branch of CFG. Latents are images in [-1, 1].
    """

    def __init__(self, model: torch.nn.Module, sampler: DDIMSampler | LCMSampler, *,
                 prompt_to_class: Callable[[object], int], null_class: int, **kwargs) -> None:
        config = _unet_config(model)
        shape = (config["in_channels"], config["sample_size"], config["sample_size"])
        super().__init__(model, sampler, latent_shape=shape, **kwargs)
        self.prompt_to_class = prompt_to_class
        self.null_class = null_class

    def encode_prompts(self, prompts: list) -> torch.Tensor:
        labels = []
        for index, prompt in enumerate(prompts):
            try:
                labels.append(self.prompt_to_class(prompt))
            except DataError as exc:
                raise DataError(f"prompt {index}: {exc}") from None
        return torch.tensor(labels, dtype=torch.long, device=self.device)

    def null_conditioning(self, batch: int) -> torch.Tensor:
        return torch.full((batch,), self.null_class, dtype=torch.long, device=self.device)

    def denoise(self, module, x, t, conditioning):
        return module(x, t, class_labels=conditioning).sample

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return (latents + 1) / 2


def _unet_config(model: torch.nn.Module) -> dict:
    """The diffusers config of a UNet, through a peft wrapper if there is one."""
    return dict(unwrapped(model).config)


def add_lora(model: torch.nn.Module, target_modules: list[str], *, r: int = 8, alpha: int = 16,
             dropout: float = 0.0) -> torch.nn.Module:
    """Wrap a diffusers denoiser in a peft LoRA model (base frozen; B = 0, so it starts as the
    base)."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(model, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout,
                                             target_modules=list(target_modules)))
    model.eval()  # dropout off: log-probs must be those of the policy that samples
    return model


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of `model` to serve as pi_ref when there is no LoRA adapter to disable."""
    return copy.deepcopy(model).requires_grad_(False).eval()
