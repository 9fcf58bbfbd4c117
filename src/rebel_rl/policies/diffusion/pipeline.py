"""The REBEL paper's image setup, for users with a GPU: a text-conditioned latent diffusion policy.

Components come from a diffusers Stable Diffusion or LCM checkpoint (e.g.
"SimianLuo/LCM_Dreamshaper_v7"): `UNet2DConditionModel` (the trained denoiser, with LoRA on its
attention projections), `AutoencoderKL` (decodes final latents to images), `CLIPTextModel` +
`CLIPTokenizer` (prompt embeddings, frozen) and the scheduler config (its betas drive our DDIM or
LCM sampler). Sampling, log-densities and guidance are the generic ones of `DiffusionPolicy`.

Guidance: a UNet with `time_cond_proj_dim` (a guidance-distilled LCM) takes the guidance scale as an
embedding of w = guidance_scale - 1, exactly as diffusers' LCM pipeline does, in one pass; any other
UNet uses classifier-free guidance against the embedding of `negative_prompt` (default "").
"""
from __future__ import annotations

from pathlib import Path

import torch

from ...errors import DataError, ModelError, first_line
from ...models.pretrained import model_load_errors
from .policy import DiffusionPolicy, _unet_config, add_lora, frozen_copy
from .sampling import DDIMSampler, LCMSampler, make_sampler

ATTENTION_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


class LatentDiffusionPolicy(DiffusionPolicy):
    """A Stable Diffusion / LCM UNet with its VAE and CLIP text encoder; conditioning = text
    embeddings."""

    def __init__(
        self,
        unet: torch.nn.Module,
        vae,
        text_encoder,
        tokenizer,
        sampler: DDIMSampler | LCMSampler,
        *,
        height: int = 512,
        width: int = 512,
        negative_prompt: str = "",
        **kwargs,
    ) -> None:
        config = _unet_config(unet)
        scale = 2 ** (len(vae.config.block_out_channels) - 1)
        if height % scale or width % scale:
            raise ValueError(
                f"height and width must be multiples of the VAE's downsampling factor {scale}"
            )
        super().__init__(
            unet,
            sampler,
            latent_shape=(config["in_channels"], height // scale, width // scale),
            **kwargs,
        )
        self.vae = vae.requires_grad_(False).eval()
        self.text_encoder = text_encoder.requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.negative_prompt = negative_prompt
        self.guidance_embedding_dim = config.get("time_cond_proj_dim")
        self._null: torch.Tensor | None = None

    @property
    def uses_guidance(self) -> bool:
        """Classifier-free guidance only when the UNet does not take the guidance scale as an
        input."""
        return self.guidance_embedding_dim is None and self.guidance_scale != 1.0

    def check_prompts(self, prompts: list, chunk: int = 256) -> None:
        """Every prompt must be text that fits the tokenizer's window (no silent truncation)."""
        for start in range(0, len(prompts), chunk):
            self._token_ids(prompts[start:start + chunk], first_index=start)

    def _token_ids(self, prompts: list, first_index: int = 0) -> torch.Tensor:
        limit = self.tokenizer.model_max_length
        for index, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise DataError(
                    f"prompt {first_index + index} is a {type(prompt).__name__}: image prompts "
                    f"must be text"
                )
            length = len(self.tokenizer(prompt)["input_ids"])
            if length > limit:
                raise DataError(
                    f"prompt {first_index + index} has {length} tokens, more than the text "
                    f"encoder's "
                    f"{limit}: shorten it"
                )
        batch = self.tokenizer(
            prompts, padding="max_length", max_length=limit, truncation=True, return_tensors="pt"
        )
        return batch["input_ids"]

    @torch.no_grad()
    def encode_prompts(self, prompts: list) -> torch.Tensor:
        ids = self._token_ids(prompts).to(self.text_encoder.device)
        return self.text_encoder(ids)[0].to(self.device)

    def null_conditioning(self, batch: int) -> torch.Tensor:
        if self._null is None:
            self._null = self.encode_prompts([self.negative_prompt])
        return self._null.expand(batch, *self._null.shape[1:])

    def denoise(self, module, x, t, conditioning):
        # Latents are kept in float32 (for exact log-densities); a half-precision UNet gets its own
        # dtype.
        dtype = next(self.model.parameters()).dtype
        extra = {}
        if self.guidance_embedding_dim is not None:
            extra["timestep_cond"] = self._guidance_embedding(len(x), dtype)
        return module(x.to(dtype), t, encoder_hidden_states=conditioning.to(dtype), **extra).sample

    def _guidance_embedding(self, batch: int, dtype: torch.dtype) -> torch.Tensor:
        from diffusers import LatentConsistencyModelPipeline

        # diffusers' LCM pipeline uses w = guidance_scale - 1 (the Imagen CFG convention); the
        # method does not touch `self`, so we call it unbound rather than copy it.
        w = torch.full((batch,), self.guidance_scale - 1.0)
        embedding = LatentConsistencyModelPipeline.get_guidance_scale_embedding(
            None, w, embedding_dim=self.guidance_embedding_dim)
        return embedding.to(device=self.device, dtype=dtype)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.to(self.vae.dtype) / self.vae.config.scaling_factor
        return (self.vae.decode(latents).sample / 2 + 0.5).clamp(0, 1)


def build_latent_diffusion_policy(
    unet,
    vae,
    text_encoder,
    tokenizer,
    scheduler_config: dict,
    *,
    sampler: str = "lcm",
    num_steps: int = 8,
    eta: float = 1.0,
    guidance_scale: float = 8.0,
    temperature: float = 1.0,
    height: int = 512,
    width: int = 512,
    use_lora: bool = True,
    lora_r: int = 8,
    lora_alpha: int = 16,
    lora_targets: tuple[str, ...] = ATTENTION_TARGETS,
) -> LatentDiffusionPolicy:
    """Assemble a policy from loaded components: the sampler on the scheduler's betas, LoRA on the
    UNet (reference = adapter disabled) or else a frozen copy of the UNet as reference."""
    steps_sampler = make_sampler(sampler, scheduler_config, num_steps, eta)
    unet.eval()
    reference = None
    if use_lora:
        unet = add_lora(unet, lora_targets, r=lora_r, alpha=lora_alpha)
    else:
        reference = frozen_copy(unet)
    return LatentDiffusionPolicy(
        unet,
        vae,
        text_encoder,
        tokenizer,
        steps_sampler,
        height=height,
        width=width,
        guidance_scale=guidance_scale,
        temperature=temperature,
        reference_model=reference,
    )


def load_latent_diffusion_policy(
    name_or_path: str = "SimianLuo/LCM_Dreamshaper_v7",
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cuda",
    **options,
) -> LatentDiffusionPolicy:
    """Load unet/, vae/, text_encoder/, tokenizer/ and scheduler/ of a diffusers checkpoint (a local
    folder or a hub id) and build the policy (`options` go to `build_latent_diffusion_policy`).
    ModelError with one line if a component cannot be loaded."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    source = (
        str(Path(name_or_path).expanduser())
        if Path(name_or_path).expanduser().exists()
        else name_or_path
    )
    try:
        unet = UNet2DConditionModel.from_pretrained(source, subfolder="unet", dtype=dtype)
        vae = AutoencoderKL.from_pretrained(source, subfolder="vae", dtype=dtype)
        text_encoder = CLIPTextModel.from_pretrained(source, subfolder="text_encoder", dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(source, subfolder="tokenizer")
        scheduler_config = DDIMScheduler.load_config(source, subfolder="scheduler")
    except model_load_errors() as exc:
        raise ModelError(
            f"cannot load diffusion checkpoint {name_or_path!r}: {first_line(exc)}"
        ) from None
    policy = build_latent_diffusion_policy(
        unet.to(device),
        vae.to(device),
        text_encoder.to(device),
        tokenizer,
        scheduler_config,
        **options,
    )
    return policy
