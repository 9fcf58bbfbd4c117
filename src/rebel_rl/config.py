"""The run configuration: one dataclass, YAML files, `--field value` overrides, validation.

Every option of a run lives in `RebelConfig`; the CLI, YAML files and the Python API all fill the
same fields, and `validate()` reports every mistake as one `ConfigError` line before any model loads.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

# The embedded default run: SmolLM2-135M-Instruct, loaded offline, made more positive with LoRA.
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
DEFAULT_DATASET = "builtin:positive_sentiment"
ALGORITHM_NAMES = ["rebel", "ppo", "rloo", "reinforce", "iterative_dpo", "ddpo"]


class ConfigBase:
    """YAML, dict and command-line construction shared by every stage's config dataclass.

    Subclasses are dataclasses whose field comments are the reference docs; `command` names the CLI
    subcommand that takes them (for error messages).
    """

    command = "train"

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> Any:
        """Build a config from a mapping, rejecting unknown keys and converting values to field types."""
        known = {f.name: f for f in fields(cls)}
        unknown = [k for k in values if k not in known]
        if unknown:
            raise ConfigError(
                f"unknown config key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} in {source}: "
                f"see `rebel {cls.command} --help` for the list of fields"
            )
        hints = typing.get_type_hints(cls)
        converted = {k: _convert(k, v, hints[k], source) for k, v in values.items()}
        return cls(**converted)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Any:
        """Load a YAML file of `field: value` pairs."""
        return cls.from_dict(read_yaml(path), source=str(path))

    def with_overrides(self, overrides: dict[str, Any], source: str = "command line") -> Any:
        """Return a copy with some fields replaced (values may be strings from the command line)."""
        merged = asdict(self)
        merged.update(overrides)
        return type(self).from_dict(merged, source=source)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save_yaml(self, path: str | Path) -> None:
        """Write the config as YAML, atomically (a crash never leaves a half-written config)."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))
        os.replace(tmp, path)


@dataclass
class RebelConfig(ConfigBase):
    """All options of an online RL run (REBEL by default). Field comments are the reference docs."""

    # --- model ---
    model_name_or_path: str = DEFAULT_MODEL  # local path, hub id, builtin:smollm2-135m-instruct, or builtin:digits-denoiser (images)
    dtype: str = "auto"  # weights: auto (fp32 on CPU, bf16 on GPUs that support it) | float32 | bfloat16 | float16
    mixed_precision: str = "auto"  # autocast: auto (bf16 where the CPU/GPU computes it natively) | no | bf16 | fp16
    use_lora: bool = True  # LoRA through peft; pi_ref = the model with the adapter disabled
    lora_r: int = 16  # LoRA rank
    lora_alpha: int = 32  # LoRA scaling numerator (scale = lora_alpha / lora_r)
    lora_dropout: float = 0.0  # dropout inside LoRA layers (off during RL: the model runs in eval mode)
    lora_target_modules: str = "all-linear"  # peft target_modules: all-linear or comma-separated names
    merge_adapter: bool = False  # also save a merged full model at the end

    # --- data ---
    dataset: str = DEFAULT_DATASET  # .jsonl/.json/.csv/.parquet file, save_to_disk folder, hub id, builtin:NAME
    dataset_split: str = "train"  # split of `dataset` to train on
    eval_dataset: str | None = None  # held-out prompts; default: `dataset` with split `eval_split`
    eval_split: str = "test"  # split of the held-out prompts
    prompt_column: str = "prompt"  # column holding the prompts (text or chat messages)
    max_prompt_length: int = 256  # prompts longer than this (in tokens) are an error, not silently cut

    # --- rewards ---
    rewards: list[str] = field(default_factory=lambda: ["sentiment"])  # builtin, module:fn, file.py:fn, model:PATH
    reward_weights: list[float] | None = None  # one per reward; default 1.0 each
    kl_coef: float = 0.05  # reward = score - kl_coef * (log pi_t(y) - log pi_ref(y))
    missing_eos_penalty: float = 0.0  # subtracted from the score of a completion that never emits EOS

    # --- sampling ---
    num_generations: int = 2  # n completions per prompt (REBEL compares all pairs)
    prompts_per_iteration: int = 16  # prompts sampled per iteration (per process)
    max_new_tokens: int = 24  # completion length cap; a completion that reaches it has no EOS
    temperature: float | None = None  # scales the log-probs too; None: 0.7 for a causal LM, 1.0 for a diffusion policy (multiplies its noise std)
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # nucleus sampling; 1.0 = off
    # --- pairs and preferences (REBEL's extensions, docs/extensions/) ---
    pair_source: str = "online"  # rebel: online (n samples) | hybrid (n-k samples + k dataset completions) | offline (all n from the dataset)
    completion_columns: list[str] | None = None  # the k dataset columns of written completions; default: completion (hybrid), chosen,rejected (offline)
    pairing: str = "all"  # rebel: all (every pair i < j of a prompt's n) | best_worst (highest- vs lowest-reward of n)
    reward_normalization: str = "none"  # none (as in the paper) | prompt (per-prompt mean/std) | batch (batch mean/std); not ppo
    preference: str | None = None  # rebel: regress on P(y > y'|x) - 1/2 instead of rewards: builtin, module:fn, file.py:fn, model:PATH
    # --- algorithm and optimisation ---
    algorithm: str = "rebel"  # the loss: rebel | ppo | rloo | reinforce | iterative_dpo | ddpo (diffusion)
    eta: float = 1.0  # REBEL step size: the exact minimiser is pi_t * exp(eta * r)
    beta: float = 0.1  # iterative_dpo: DPO temperature (against pi_t, on the best and worst sample)
    baseline_decay: float = 0.9  # reinforce: moving-average baseline b <- decay * b + (1 - decay) * mean reward
    clip_range: float = 0.2  # ppo, ddpo: ratio clipping epsilon
    clip_range_value: float = 0.2  # ppo: value clipping around the old values
    vf_coef: float = 0.1  # ppo: weight of the value loss
    gamma: float = 1.0  # ppo: discount over completion tokens
    lam: float = 0.95  # ppo: GAE lambda
    value_model: str | None = None  # ppo: value-model init; default: the reward model if one is named, else the policy
    num_iterations: int = 24  # sample-score-update iterations
    num_epochs: int = 1  # passes over each sampled batch
    minibatch_prompts: int = 8  # prompts (each with its n completions) per optimiser micro-batch
    gradient_accumulation_steps: int = 1  # minibatches per optimiser step
    learning_rate: float = 3e-4  # AdamW peak learning rate
    weight_decay: float = 0.0  # AdamW weight decay
    warmup_ratio: float = 0.1  # fraction of optimiser steps with linear warmup
    lr_scheduler: str = "linear"  # linear | cosine | constant (all after warmup)
    max_grad_norm: float = 1.0  # gradient clipping norm
    seed: int = 0  # seed for prompt order, sampling and initialisation
    # --- evaluation ---
    eval_prompts: int = 64  # held-out prompts scored before and after training (0 = skip)
    eval_temperature: float | None = None  # scores at this temperature (default `temperature`); KL always at `temperature`
    eval_rewards: list[str] = field(default_factory=list)  # extra rewards computed only at evaluation (judges)
    eval_every: int = 0  # iterations between held-out evaluations logged as eval/* (0 = before and after only)
    eval_batch_size: int = 32  # sequences per held-out sampling batch
    eval_generations: int | None = None  # samples per held-out prompt (default num_generations)
    # --- outputs ---
    output_dir: str | None = None  # default: runs/rebel-YYYYmmdd-HHMMSS
    overwrite: bool = False  # allow replacing a run already in output_dir
    save_every: int = 10  # iterations between resumable checkpoints (0 = only the final one)
    log_completions: int = 2  # sample completions written per iteration
    tensorboard: bool = True  # write TensorBoard event files
    progress: bool = True  # show the progress bar and the final tables
    # --- diffusion policies (images, docs/images.md) ---
    model_type: str = "auto"  # auto (diffusion for builtin:digits-denoiser and diffusers folders) | causal_lm | diffusion (a pipeline hub id)
    sampler: str = "ddim"  # diffusion: ddim (stochastic DDIM) | lcm (multi-step consistency sampling, for LCM checkpoints)
    num_inference_steps: int = 10  # diffusion: denoising steps per image (each step is one action)
    ddim_eta: float = 1.0  # diffusion, ddim: noise level (1 = ancestral sampling); must be > 0 for log-probs
    guidance_scale: float = 2.0  # diffusion: classifier-free guidance scale (LCM: its guidance embedding); 1 = off
    image_size: int = 512  # latent diffusion: image height and width in pixels (the digits model is 16x16)
    ddpo_buffer_size: int = 16  # ddpo: rewards kept per prompt for its mean and std (DDPO's per-prompt stat tracking)
    ddpo_min_count: int = 16  # ddpo: a prompt with fewer kept rewards is normalised by the batch mean and std
    ddpo_adv_clip: float = 5.0  # ddpo: advantages are clipped to [-ddpo_adv_clip, ddpo_adv_clip]
    # ------------------------------------------------------------------ validation
    def validate(self, require_rewards: bool = True) -> "RebelConfig":
        """Check every value; raise one ConfigError line for the first problem found.

        `require_rewards=False` accepts an empty `rewards` list (the Python API, where
        `reward_funcs` supplies the rewards). Also fills in defaults that depend on the moment
        (a fresh, timestamped output_dir).
        """
        if self.output_dir is None:
            self.output_dir = time.strftime("runs/rebel-%Y%m%d-%H%M%S")
        if self.temperature is None:  # a diffusion sampler is defined at noise scale 1.0
            from .policies.factory import is_diffusion

            self.temperature = 1.0 if is_diffusion(self) else 0.7
        for f in fields(self):  # YAML `.nan`/`.inf` and "nan" on the command line parse as floats
            value = getattr(self, f.name)
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, float) and not math.isfinite(item):
                    raise ConfigError(f"{f.name} must be a finite number, got {item}")
        positive = ["lora_r", "num_generations", "prompts_per_iteration", "max_new_tokens",
                    "num_iterations", "num_epochs", "minibatch_prompts", "gradient_accumulation_steps",
                    "max_prompt_length", "eval_batch_size"]
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2 and self.algorithm in ("rebel", "rloo", "iterative_dpo"):
            raise ConfigError(f"num_generations must be >= 2 for {self.algorithm} (it compares samples of a prompt)")
        for name in ["eta", "temperature", "learning_rate", "beta", "clip_range", "clip_range_value"]:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.eval_temperature is not None and not self.eval_temperature > 0:
            raise ConfigError(f"eval_temperature must be > 0, got {self.eval_temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ["top_k", "kl_coef", "weight_decay", "max_grad_norm", "lora_dropout", "save_every",
                     "log_completions", "eval_prompts", "eval_every", "vf_coef"]:
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ["baseline_decay", "gamma", "lam"]:
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        if self.prompts_per_iteration % self.minibatch_prompts:
            raise ConfigError(
                f"prompts_per_iteration ({self.prompts_per_iteration}) must be a multiple of "
                f"minibatch_prompts ({self.minibatch_prompts})"
            )
        minibatches = self.prompts_per_iteration // self.minibatch_prompts
        if minibatches % self.gradient_accumulation_steps:
            raise ConfigError(
                f"gradient_accumulation_steps ({self.gradient_accumulation_steps}) must divide the number of "
                f"minibatches per epoch ({minibatches} = prompts_per_iteration / minibatch_prompts)"
            )
        _check_choice("dtype", self.dtype, ["auto", "float32", "bfloat16", "float16"])
        _check_choice("mixed_precision", self.mixed_precision, ["auto", "no", "bf16", "fp16"])
        _check_choice("lr_scheduler", self.lr_scheduler, ["linear", "cosine", "constant"])
        _check_choice("algorithm", self.algorithm, ALGORITHM_NAMES)
        _check_diffusion(self)
        _check_pairs(self)
        if not self.rewards and require_rewards and self.preference is None:
            raise ConfigError("rewards is empty: name at least one reward, e.g. --rewards sentiment")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ConfigError(
                f"reward_weights has {len(self.reward_weights)} values for {len(self.rewards)} rewards: give one weight per reward"
            )
        return self


def _check_diffusion(config: RebelConfig) -> None:
    """The diffusion-policy and ddpo fields (which policy a source names is checked when the run starts)."""
    _check_choice("model_type", config.model_type, ["auto", "causal_lm", "diffusion"])
    _check_choice("sampler", config.sampler, ["ddim", "lcm"])
    for name in ["num_inference_steps", "image_size", "ddpo_buffer_size", "ddpo_min_count"]:
        if getattr(config, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ["ddim_eta", "guidance_scale", "ddpo_adv_clip"]:
        if not getattr(config, name) > 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)}")
    if config.eval_generations is not None and config.eval_generations < 1:
        raise ConfigError(f"eval_generations must be >= 1, got {config.eval_generations}")
    if config.algorithm == "ddpo" and config.reward_normalization != "none":
        raise ConfigError("ddpo normalises rewards per prompt itself: use reward_normalization none")


def _check_pairs(config: RebelConfig) -> None:
    """The extensions' fields: where pairs come from, how they are chosen and normalised, preferences."""
    _check_choice("pair_source", config.pair_source, ["online", "hybrid", "offline"])
    _check_choice("pairing", config.pairing, ["all", "best_worst"])
    _check_choice("reward_normalization", config.reward_normalization, ["none", "prompt", "batch"])
    rebel_only = {"pair_source": config.pair_source != "online", "pairing": config.pairing != "all",
                  "preference": config.preference is not None}
    for name, used in rebel_only.items():
        if used and config.algorithm != "rebel":
            raise ConfigError(f"{name} {getattr(config, name)!r} needs algorithm rebel, got {config.algorithm!r}")
    if config.reward_normalization != "none" and (config.algorithm == "ppo" or config.preference is not None):
        what = "ppo (it whitens its advantages)" if config.algorithm == "ppo" else "a preference (its target is P - 1/2)"
        raise ConfigError(f"reward_normalization {config.reward_normalization!r} does not apply to {what}: use none")
    if config.pairing == "best_worst" and config.preference is not None:
        raise ConfigError("pairing best_worst ranks samples by reward: use pairing all with a preference")
    columns = completion_columns(config)
    if config.pair_source == "online" and config.completion_columns:
        raise ConfigError("completion_columns is read only with pair_source hybrid or offline")
    if config.pair_source == "hybrid" and len(columns) >= config.num_generations:
        raise ConfigError(f"pair_source hybrid samples num_generations - {len(columns)} completion(s) per prompt: "
                          f"num_generations ({config.num_generations}) must exceed the {len(columns)} completion_columns")
    if config.pair_source == "offline" and len(columns) != config.num_generations:
        raise ConfigError(f"pair_source offline takes all num_generations ({config.num_generations}) completions "
                          f"from completion_columns, which has {len(columns)}: make them equal")


def completion_columns(config: RebelConfig) -> list[str]:
    """The dataset columns whose completions fill the last slots of each prompt's n (empty when online)."""
    if config.pair_source == "online":
        return []
    if config.completion_columns:
        return list(config.completion_columns)
    return ["completion"] if config.pair_source == "hybrid" else ["chosen", "rejected"]


def packaged_config(name: str) -> Path:
    """The YAML recipe `name` shipped in rebel_rl/configs/ (`images_digits`, `lcm_aesthetic`, ...)."""
    folder = Path(__file__).resolve().parent / "configs"
    path = folder / (name if name.endswith(".yaml") else f"{name}.yaml")
    if not path.is_file():
        known = ", ".join(f"builtin:{p.stem}" for p in sorted(folder.glob("*.yaml")))
        raise ConfigError(f"no packaged config {name!r}: use one of {known}")
    return path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping (`builtin:NAME` is a packaged recipe), turning every I/O or syntax problem into
    one ConfigError line."""
    path = packaged_config(str(path).removeprefix("builtin:")) if str(path).startswith("builtin:") else Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must be a mapping of `field: value` lines, got {type(data).__name__}")
    return data


def _check_choice(name: str, value: str, choices: list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _convert(name: str, value: Any, hint: Any, source: str) -> Any:
    """Convert a YAML or command-line value to the field's declared type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _convert(name, value, inner[0], source)
    try:
        if origin is list:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, (list, tuple)):
                raise TypeError
            if [str(item).lower() for item in value] in (["none"], ["[]"]):  # `--rewards none`: an empty list
                return []
            return [_convert(name, item, args[0], source) for item in _split_commas(value)]
        if hint is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("true", "1", "yes"):
                    return True
                if lowered in ("false", "0", "no"):
                    return False
                raise ValueError
            if isinstance(value, bool):
                return value
            raise TypeError
        if hint is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise TypeError
            return int(value)
        if hint is float:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        if hint is str:
            if isinstance(value, (dict, list)):
                raise TypeError
            return str(value)
    except (TypeError, ValueError):
        kind = getattr(hint, "__name__", str(hint))
        raise ConfigError(f"{name} in {source} must be {kind}, got {value!r}") from None
    return value


def _split_commas(items: list | tuple) -> list:
    """`a,b` and `a b` mean the same list, on the command line and in YAML."""
    parts = []
    for item in items:
        if isinstance(item, str):
            parts.extend(part.strip() for part in item.split(","))
        else:
            parts.append(item)
    return parts


def config_fields(cls: type = None) -> list[dataclasses.Field]:
    """The fields of a config dataclass (default RebelConfig), in declaration order (for --help and docs)."""
    return list(fields(cls or RebelConfig))
