"""The policy's option groups: its weights, precision and LoRA adapter (`model`), and how it
samples completions (`sampling`), the two groups the policy factory receives. `WeightsConfig` and
`LoraConfig` are also the offline stages' model options (stage_configs.py)."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .base import option
from .checks import (check_at_least_one, check_choice, check_non_negative, check_positive,
                     check_unit_interval)

# The embedded default run: SmolLM2-135M-Instruct, loaded offline, made more positive with LoRA.
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
DTYPES = ["auto", "float32", "bfloat16", "float16"]
MIXED_PRECISION = ["auto", "no", "bf16", "fp16"]


@dataclass
class WeightsConfig:
    """Which weights, in which precision (every stage that loads a model)."""

    model_name_or_path: str | None = option(
        DEFAULT_MODEL,
        "local path, hub id, builtin:smollm2-135m-instruct, or builtin:digits-denoiser (images)",
    )
    dtype: str = option(
        "auto",
        "weights: auto (fp32 on CPU, bf16 on GPUs that support it) | float32 | bfloat16 | float16",
    )
    mixed_precision: str = option(
        "auto",
        "autocast: auto (bf16 where the CPU/GPU computes it natively) | no | bf16 | fp16",
    )

    def validate(self) -> None:
        check_choice("dtype", self.dtype, DTYPES)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)


@dataclass
class LoraConfig:
    """A LoRA adapter through peft (pi_ref = the adapter disabled), or full fine-tuning."""

    use_lora: bool = option(True, "LoRA through peft; pi_ref = the model with the adapter disabled")
    lora_r: int = option(16, "LoRA rank")
    lora_alpha: int = option(32, "LoRA scaling numerator (scale = lora_alpha / lora_r)")
    lora_dropout: float = option(
        0.0,
        "dropout inside LoRA layers (off during RL: the model runs in eval mode)",
    )
    lora_target_modules: str = option(
        "all-linear",
        "peft target_modules: all-linear or comma-separated names",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["lora_r"])
        check_non_negative(self, ["lora_dropout"])


@dataclass
class ModelConfig(LoraConfig, WeightsConfig):
    """The policy: its weights and precision, its kind, its adapter."""

    model_type: str = option(
        "auto",
        "auto (diffusion for builtin:digits-denoiser and diffusers folders) | causal_lm | "
        "diffusion (a pipeline hub id)",
    )
    merge_adapter: bool = option(False, "also save a merged full model at the end")
    gradient_checkpointing: bool = option(
        False,
        "causal LM: recompute each layer in the update's backward instead of keeping its "
        "activations (half the peak memory at 128 tokens: docs/benchmark_memory.md)",
    )
    logprob_chunk_size: int = option(
        128,
        "causal LM: LM head over this many positions at a time in log-prob passes, recomputed in "
        "the backward; 0: full logits (docs/long_completions.md)",
    )

    def validate(self) -> None:
        WeightsConfig.validate(self)
        LoraConfig.validate(self)
        check_non_negative(self, ["logprob_chunk_size"])
        check_choice("model_type", self.model_type, ["auto", "causal_lm", "diffusion"])


@dataclass
class SamplingConfig:
    """How completions are sampled (a causal LM's tokens or a diffusion sampler's steps)."""

    num_generations: int = option(4, "n completions per prompt (REBEL compares all pairs)")
    prompts_per_iteration: int = option(8, "prompts sampled per iteration (per process)")
    max_new_tokens: int = option(
        48,
        "completion length cap; a completion that reaches it has no EOS",
    )
    temperature: float | None = option(
        None,
        "scales the log-probs too; None: the policy kind's own (0.7 for a causal LM, 1.0 for a "
        "diffusion policy: it multiplies its noise std)",
    )
    top_k: int = option(0, "0 = off")
    top_p: float = option(1.0, "nucleus sampling; 1.0 = off")
    # --- causal LMs: the generation engine (docs/vllm.md) ---
    generation_backend: str = option(
        "hf",
        "hf (transformers generate) | vllm (a vLLM engine in the training process, synced after "
        "each update; install: docs/vllm.md) | vllm_server (vLLM servers at vllm_server_url, sent "
        "the weights after each update)",
    )
    vllm_gpu_memory_utilization: float = option(
        0.3,
        "vllm on a GPU: fraction of its memory the engine may take (it shares the GPU with "
        "training)",
    )
    vllm_kv_cache_gb: float = option(
        2.0,
        "vllm on a CPU: KV-cache size in GiB (VLLM_CPU_KVCACHE_SPACE)",
    )
    vllm_tensor_parallel_size: int = option(
        1,
        "vllm on GPUs: GPUs one engine spans (vLLM's tensor parallelism)",
    )
    vllm_server_url: str = option(
        "",
        "vllm_server: the `rebel vllm-serve` server(s), e.g. http://127.0.0.1:8000; several "
        "comma-separated share the prompts round-robin",
    )
    vllm_server_timeout: float = option(
        600.0,
        "vllm_server: seconds one request (a batch's samples, a weight push) may take before the "
        "run stops",
    )
    # --- diffusion policies (images, docs/images.md) ---
    sampler: str = option(
        "ddim",
        "diffusion: ddim (stochastic DDIM) | lcm (multi-step consistency sampling, for LCM "
        "checkpoints)",
    )
    num_inference_steps: int = option(
        10,
        "diffusion: denoising steps per image (each step is one action)",
    )
    ddim_eta: float = option(
        1.0,
        "diffusion, ddim: noise level (1 = ancestral sampling); must be > 0 for log-probs",
    )
    guidance_scale: float = option(
        2.0,
        "diffusion: classifier-free guidance scale (LCM: its guidance embedding); 1 = off",
    )
    image_size: int = option(
        512,
        "latent diffusion: image height and width in pixels (the digits model is 16x16)",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["num_generations", "prompts_per_iteration", "max_new_tokens",
                                  "num_inference_steps", "image_size"])
        if self.temperature is not None:
            check_positive(self, ["temperature"])
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        check_non_negative(self, ["top_k"])
        check_choice("sampler", self.sampler, ["ddim", "lcm"])
        check_choice("generation_backend", self.generation_backend, ["hf", "vllm", "vllm_server"])
        if self.generation_backend == "vllm_server" and not self.vllm_server_url.strip(","):
            raise ConfigError("generation_backend vllm_server needs vllm_server_url: start a "
                              "server "
                              "with rebel vllm-serve --model MODEL, then pass its http://HOST:PORT")
        check_positive(self, ["vllm_gpu_memory_utilization", "vllm_kv_cache_gb",
                              "vllm_server_timeout"])
        check_unit_interval(self, ["vllm_gpu_memory_utilization"])
        check_at_least_one(self, ["vllm_tensor_parallel_size"])
        check_positive(self, ["ddim_eta", "guidance_scale"])
