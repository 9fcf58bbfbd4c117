"""Stochastic diffusion samplers with the exact per-step Gaussian log-density (ours; diffusers gives
none).

A sampler turns the denoiser's output at (x_t, t) into the Gaussian transition
p(x_{t_prev} | x_t) = N(mean, std^2 I). Sampling draws x_{t_prev} = mean + temperature * std * z,
and the log-probability of a trajectory is the sum over steps of log N(x_{t_prev}; mean,
(temperature*std)^2 I) summed over every latent element (as in DDPO, Black et al. 2023, but summed
rather than averaged).

Two samplers, both driven by a diffusers scheduler's `alphas_cumprod` and timestep schedule:

* DDIM with eta > 0 (Song et al. 2020, eq. 12 and 16):
      x0   = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)            (or from v / sample predictions)
      std  = eta * sqrt((1 - a_prev) / (1 - a_t)) * sqrt(1 - a_t / a_prev)
      mean = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps
  eta = 1 is DDPM's ancestral sampler. With `set_alpha_to_one=True` the final step (to a_prev = 1)
  has std = 0: it is deterministic and contributes no log-prob.
* Multi-step consistency sampling (LCM, Luo et al. 2023), the sampler of the REBEL paper's image
  runs:
      denoised = c_out(t) x0 + c_skip(t) x_t
      mean = sqrt(a_prev) denoised, std = sqrt(1 - a_prev)    (re-noise to the next timestep)
  The LAST step returns `denoised` itself: it is deterministic and contributes no log-prob.

Timesteps are those of the scheduler's `set_timesteps`; a step's previous timestep is the next one
in the schedule, and -1 after the last (meaning "the clean sample": the scheduler's
final_alpha_cumprod).
"""
from __future__ import annotations

import inspect
import math

import torch
from diffusers import DDIMScheduler, LCMScheduler

FINAL = -1  # previous-timestep marker of the last step


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(x; mean, std^2 I) of each row, summed over all but the first dimension; shape (B,),
    float64.

    `std` has shape (B,). Rows with std == 0 are deterministic steps and get log-prob 0 (and zero
    gradient). float64 because the sum over many pixels is large while REBEL needs small
    differences.
    """
    diff = (x.double() - mean.double()).flatten(1)
    stochastic = std > 0
    var = torch.where(stochastic, std.double() ** 2, torch.ones_like(std, dtype=torch.float64))
    dim = diff.shape[1]
    logp = -0.5 * diff.pow(2).sum(1) / var - 0.5 * dim * torch.log(2 * math.pi * var)
    return torch.where(stochastic, logp, torch.zeros_like(logp))


def x0_and_eps(
    model_output: torch.Tensor, sample: torch.Tensor, alpha: torch.Tensor, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean-sample and noise predictions implied by the model output (epsilon, v or sample)."""
    a = _per_row(alpha, sample)
    if prediction_type == "epsilon":
        eps = model_output
        x0 = (sample - (1 - a).sqrt() * eps) / a.sqrt()
    elif prediction_type == "v_prediction":
        x0 = a.sqrt() * sample - (1 - a).sqrt() * model_output
        eps = a.sqrt() * model_output + (1 - a).sqrt() * sample
    elif prediction_type == "sample":
        x0 = model_output
        eps = (sample - a.sqrt() * x0) / (1 - a).sqrt()
    else:
        raise ValueError(
            f"unsupported prediction_type {prediction_type!r}: use epsilon, v_prediction or sample"
        )
    return x0, eps


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast against a batch of latents."""
    return values.view(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class _SchedulerSampler:
    """What both samplers share: the timestep schedule and alpha-bar lookups from a diffusers
    scheduler."""

    name = "base"

    def __init__(self, scheduler, num_steps: int) -> None:
        if getattr(scheduler.config, "thresholding", False):
            raise ValueError(
                "dynamic thresholding is not supported: its x0 is not a smooth function of the "
                "model"
            )
        scheduler.set_timesteps(num_steps)
        self.scheduler = scheduler
        self.num_steps = num_steps
        self.timesteps = scheduler.timesteps.long().cpu()
        self.alphas_cumprod = scheduler.alphas_cumprod.float().cpu()
        self.final_alpha_cumprod = float(
            getattr(scheduler, "final_alpha_cumprod", torch.tensor(1.0))
        )
        self.prediction_type = scheduler.config.prediction_type
        self.clip_range = (
            scheduler.config.clip_sample_range if scheduler.config.clip_sample else None
        )

    def schedule(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps, previous timesteps), each (T,) long; the last previous timestep is FINAL
        (-1)."""
        prev = torch.cat([self.timesteps[1:], torch.tensor([FINAL])])
        return self.timesteps.clone(), prev

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """alpha-bar at each timestep of `t` (B,), with FINAL mapped to the scheduler's final
        value."""
        table = self.alphas_cumprod.to(t.device)
        final = torch.full(t.shape, self.final_alpha_cumprod, device=t.device)
        return torch.where(t >= 0, table[t.clamp(min=0)], final)

    def predict_x0(self, model_output: torch.Tensor, sample: torch.Tensor, t: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """x0 (clipped if the scheduler clips) and eps, exactly as the diffusers scheduler derives
        them."""
        x0, eps = x0_and_eps(model_output, sample, self.alpha(t), self.prediction_type)
        if self.clip_range is not None:
            x0 = x0.clamp(-self.clip_range, self.clip_range)
        return x0, eps

    def config(self) -> dict:
        """What identifies this sampler (for logs and checkpoints)."""
        return {"sampler": self.name, "num_steps": self.num_steps}


class DDIMSampler(_SchedulerSampler):
    """DDIM with noise: eta = 1 is ancestral (DDPM-like) sampling, eta = 0 would be deterministic.

    Uses the scheduler's alphas_cumprod, final_alpha_cumprod, prediction_type and clip_sample;
    `step` returns the Gaussian transition's mean and std, equal to `DDIMScheduler.step(..., eta)`
    without noise whenever the next timestep is t - num_train_timesteps // num_steps (diffusers' own
    convention).
    """

    name = "ddim"

    def __init__(self, scheduler: DDIMScheduler, num_steps: int, eta: float = 1.0) -> None:
        if eta <= 0:
            raise ValueError(
                f"DDIM eta must be > 0 for a stochastic policy with log-probs, got {eta}"
            )
        super().__init__(scheduler, num_steps)
        self.eta = eta

    def step(
        self,
        model_output: torch.Tensor,
        sample: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, ...) and std (B,) of x_{t_prev} given x_t = `sample`; t, t_prev are (B,)
        long."""
        a_t, a_prev = self.alpha(t), self.alpha(t_prev)
        x0, eps = self.predict_x0(model_output, sample, t)
        variance = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)
        std = self.eta * variance.clamp(min=0).sqrt()
        direction = (1 - a_prev - std**2).clamp(min=0).sqrt()
        mean = _per_row(a_prev.sqrt(), x0) * x0 + _per_row(direction, eps) * eps
        return mean, std

    def config(self) -> dict:
        return {**super().config(), "eta": self.eta}


class LCMSampler(_SchedulerSampler):
    """Multi-step consistency sampling: predict the clean sample, then re-noise it to the next
    timestep.

    Every step but the last is N(sqrt(a_prev) * denoised, (1 - a_prev) I); the last step outputs
    `denoised` deterministically (std 0, log-prob 0), as `LCMScheduler.step` does.
    """

    name = "lcm"

    def __init__(self, scheduler: LCMScheduler, num_steps: int) -> None:
        super().__init__(scheduler, num_steps)

    def step(
        self,
        model_output: torch.Tensor,
        sample: torch.Tensor,
        t: torch.Tensor,
        t_prev: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (B, ...) and std (B,) of x_{t_prev} given x_t = `sample`; t, t_prev are (B,)
        long."""
        x0, _ = self.predict_x0(model_output, sample, t)
        # diffusers computes the consistency-model boundary scalings; elementwise on a tensor of
        # timesteps.
        c_skip, c_out = self.scheduler.get_scalings_for_boundary_condition_discrete(t.double())
        denoised = _per_row(c_out, x0) * x0 + _per_row(c_skip, sample) * sample
        last = t_prev < 0
        a_prev = self.alpha(t_prev)
        scale = torch.where(last, torch.ones_like(a_prev), a_prev.sqrt())
        std = torch.where(last, torch.zeros_like(a_prev), (1 - a_prev).sqrt())
        return _per_row(scale, denoised) * denoised, std


def make_sampler(name: str, scheduler_config: dict, num_steps: int, eta: float = 1.0, **overrides
                 ) -> DDIMSampler | LCMSampler:
    """A sampler by name ("ddim" or "lcm") on a scheduler built from `scheduler_config` (any
    diffusers scheduler's config: its betas, prediction type and clipping carry over), with config
    `overrides` such as timestep_spacing="trailing" or set_alpha_to_one=True."""
    if name not in ("ddim", "lcm"):
        raise ValueError(f"unknown sampler {name!r}: use ddim or lcm")
    cls = DDIMScheduler if name == "ddim" else LCMScheduler
    # Keep what this scheduler accepts; diffusers' bookkeeping keys (`_use_default_values`) would
    # make from_config ignore the overrides, and other schedulers' keys only produce warnings.
    accepted = inspect.signature(cls.__init__).parameters
    config = {k: v for k, v in dict(scheduler_config).items() if k in accepted} | overrides
    scheduler = cls.from_config(config)
    return (
        DDIMSampler(scheduler, num_steps, eta)
        if name == "ddim"
        else LCMSampler(scheduler, num_steps)
    )


def apply_guidance(model_output: torch.Tensor, guidance_scale: float) -> torch.Tensor:
    """Classifier-free guidance on a batch [conditional; unconditional]: u + g (c - u)."""
    conditional, unconditional = model_output.chunk(2)
    return unconditional + guidance_scale * (conditional - unconditional)
