"""`RebelConfig`, the options of an online run, in groups by layer.

Each group is a small dataclass that validates itself and is all its component receives: the policy
factory gets `model` and `sampling`, the data loader `data`, the reward set `reward`, the loop
`training`, evaluation `evaluation`, the run folder `output`, and each algorithm its own option
group (registered with the algorithm, training/online/methods/). Each field's `option(default,
help)` is the reference docs (`rebel train --help`, docs/configuration.md). `RebelConfig` checks
what spans groups, with the algorithm registry.
"""
from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .algorithms import algorithm_names, algorithm_spec, option_groups
from .base import (GroupedConfig, check_at_least_one, check_choice, check_non_negative,
                   check_positive, check_unit_interval, option)

# The embedded default run: SmolLM2-135M-Instruct, loaded offline, made more positive with LoRA.
DEFAULT_MODEL = "builtin:smollm2-135m-instruct"
DEFAULT_DATASET = "builtin:positive_sentiment"
DTYPES = ["auto", "float32", "bfloat16", "float16"]
MIXED_PRECISION = ["auto", "no", "bf16", "fp16"]
LR_SCHEDULERS = ["linear", "cosine", "constant"]
TRACKERS = ["tensorboard", "wandb", "trackio"]


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
        0,
        "causal LM: LM head over this many positions at a time in log-prob passes, recomputed in "
        "the backward; 0: full logits (docs/long_completions.md)",
    )

    def validate(self) -> None:
        WeightsConfig.validate(self)
        LoraConfig.validate(self)
        check_non_negative(self, ["logprob_chunk_size"])
        check_choice("model_type", self.model_type, ["auto", "causal_lm", "diffusion"])


@dataclass
class DataConfig:
    """Prompts, and where each prompt's completions come from and how they are paired."""

    dataset: str = option(
        DEFAULT_DATASET,
        ".jsonl/.json/.csv/.parquet file, save_to_disk folder, hub id, builtin:NAME",
    )
    dataset_split: str = option("train", "split of `dataset` to train on")
    eval_dataset: str | None = option(
        None,
        "held-out prompts; default: `dataset` with split `eval_split`",
    )
    eval_split: str = option("test", "split of the held-out prompts")
    prompt_column: str = option("prompt", "column holding the prompts (text or chat messages)")
    max_prompt_length: int = option(
        256,
        "prompts longer than this (in tokens) are an error, not silently cut",
    )
    # --- pairs (REBEL's extensions, docs/extensions/) ---
    pair_source: str = option(
        "online",
        "rebel: online (n samples) | hybrid (n-k samples + k dataset completions) | offline (all n "
        "from the dataset)",
    )
    completion_columns: list[str] | None = option(
        None,
        "the k dataset columns of written completions; default: completion (hybrid), "
        "chosen,rejected (offline)",
    )
    pairing: str = option(
        "all",
        "rebel: all (every pair i < j of a prompt's n) | best_worst (highest- vs lowest-reward of "
        "n)",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["max_prompt_length"])
        check_choice("pair_source", self.pair_source, ["online", "hybrid", "offline"])
        check_choice("pairing", self.pairing, ["all", "best_worst"])
        if self.pair_source == "online" and self.completion_columns:
            raise ConfigError("completion_columns is read only with pair_source hybrid or offline")

    def written_columns(self) -> list[str]:
        """The dataset columns whose completions fill the last slots of each prompt's n (empty when
        online)."""
        if self.pair_source == "online":
            return []
        if self.completion_columns:
            return list(self.completion_columns)
        return ["completion"] if self.pair_source == "hybrid" else ["chosen", "rejected"]


@dataclass
class RewardConfig:
    """What is maximised: rewards (or a preference), the KL penalty and the missing-EOS penalty."""

    rewards: list[str] = option(
        help="builtin, module:fn, file.py:fn, model:PATH",
        factory=lambda: ["sentiment"],
    )
    reward_weights: list[float] | None = option(None, "one per reward; default 1.0 each")
    kl_coef: float = option(0.05, "reward = score - kl_coef * (log pi_t(y) - log pi_ref(y))")
    missing_eos_penalty: float = option(
        0.0,
        "subtracted from the score of a completion that never emits EOS",
    )
    reward_normalization: str = option(
        "none",
        "none (as in the paper) | prompt (per-prompt mean/std) | batch (batch mean/std); not ppo",
    )
    preference: str | None = option(
        None,
        "rebel: regress on P(y > y'|x) - 1/2 instead of rewards: builtin, module:fn, file.py:fn, "
        "model:PATH",
    )
    reward_timeout: float | None = option(
        None,
        "seconds per call of a module:fn, file.py:fn reward",
    )
    reward_failure_score: float | None = option(
        None,
        "score for failed/timed-out calls; None: stop",
    )
    reward_workers: int = option(
        1,
        "with reward_timeout: processes per file/module reward, a chunk each",
    )
    reward_max_consecutive_failures: int | None = option(None, "stop at N failed calls in a row")

    def validate(self, require_rewards: bool = True) -> None:
        check_non_negative(self, ["kl_coef"])
        check_choice("reward_normalization", self.reward_normalization, ["none", "prompt", "batch"])
        if not self.rewards and require_rewards and self.preference is None:
            raise ConfigError("rewards is empty: name at least one reward, e.g. --rewards "
                              "sentiment")
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise ConfigError(f"reward_weights has {len(self.reward_weights)} values for "
                              f"{len(self.rewards)} rewards: "
                              "give one weight per reward")
        if self.reward_timeout is not None and not self.reward_timeout > 0:
            raise ConfigError(f"reward_timeout must be > 0 seconds, got {self.reward_timeout}: "
                              "leave it unset (None) for no time-out")
        check_at_least_one(self, ["reward_workers"])
        if self.reward_workers > 1 and self.reward_timeout is None:
            raise ConfigError(f"reward_workers={self.reward_workers} needs reward_timeout (workers "
                              "run only with a time-out): set reward_timeout, or reward_workers: 1")
        if self.reward_max_consecutive_failures is not None:
            check_at_least_one(self, ["reward_max_consecutive_failures"])
        if self.preference is not None and self.reward_normalization != "none":
            raise ConfigError(f"reward_normalization {self.reward_normalization!r} does not apply "
                              "to a preference "
                              "(its target is P - 1/2): use none")


@dataclass
class SamplingConfig:
    """How completions are sampled (a causal LM's tokens or a diffusion sampler's steps)."""

    num_generations: int = option(4, "n completions per prompt (REBEL compares all pairs)")
    prompts_per_iteration: int = option(8, "prompts sampled per iteration (per process)")
    max_new_tokens: int = option(
        24,
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


@dataclass
class EnvironmentConfig:
    """Multi-turn episodes: the policy talks to an environment for several turns
    (docs/multiturn.md)."""

    environment: str | None = option(
        None,
        "module:Class, file.py:Class or builtin:NAME; None = single-turn",
    )
    max_turns: int = option(4, "environment: most policy turns per episode")
    max_total_tokens: int = option(
        512,
        "environment: most tokens per episode (prompt excluded), all turns",
    )
    step_timeout: float | None = option(
        None,
        "environment: seconds per reset/step call; None = no limit",
    )
    step_failure_score: float | None = option(
        None,
        "environment: episode reward when a step fails; None = stop",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["max_turns", "max_total_tokens"])
        if self.step_timeout is not None and not self.step_timeout > 0:
            raise ConfigError(f"step_timeout must be > 0 seconds, got {self.step_timeout}: "
                              "leave it unset (None) for no time-out")


@dataclass
class OptimizerConfig:
    """AdamW with a warmup-then-decay schedule (the online loop and every offline stage)."""

    learning_rate: float | None = option(5e-4, "AdamW peak learning rate")
    weight_decay: float = option(0.0, "AdamW weight decay")
    warmup_ratio: float = option(0.1, "fraction of optimiser steps with linear warmup")
    lr_scheduler: str = option("linear", "linear | cosine | constant (all after warmup)")
    max_grad_norm: float = option(1.0, "gradient clipping norm")
    seed: int = option(0, "seed for prompt order, sampling and initialisation")

    def validate(self) -> None:
        check_positive(self, ["learning_rate"])
        check_non_negative(self, ["weight_decay", "max_grad_norm"])
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        check_choice("lr_scheduler", self.lr_scheduler, LR_SCHEDULERS)


@dataclass
class TrainingConfig(OptimizerConfig):
    """The algorithm, the iterations and how each batch is reused, and the optimiser."""

    algorithm: str = option("rebel", "the loss: one of the registered algorithms ({algorithms})")
    num_iterations: int = option(16, "sample-score-update iterations")
    num_epochs: int = option(1, "passes over each sampled batch")
    minibatch_prompts: int | None = option(
        None,
        "prompts (each with its n completions) per optimiser micro-batch; default: all "
        "prompts_per_iteration (one update forward, which also gives log pi_t)",
    )
    gradient_accumulation_steps: int = option(1, "minibatches per optimiser step")
    max_tokens_per_microbatch: int = option(
        0,
        "real tokens per forward+backward, same gradient (0 = off)",
    )
    async_rollouts: int = option(
        0,
        "1 = draw batch t+1 from the weights before update t (one iteration stale; "
        "docs/scaling.md); 0 = off",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["num_iterations", "num_epochs", "gradient_accumulation_steps"]
                           + ([] if self.minibatch_prompts is None else ["minibatch_prompts"]))
        check_non_negative(self, ["max_tokens_per_microbatch"])
        super().validate()
        algorithm_spec(self.algorithm)


@dataclass
class EvalConfig:
    """Held-out evaluation before, during and after training."""

    eval_prompts: int = option(64, "held-out prompts scored before and after training (0 = skip)")
    eval_temperature: float | None = option(
        None,
        "scores at this temperature (default `temperature`); KL always at `temperature`",
    )
    eval_rewards: list[str] = option(
        help="extra rewards computed only at evaluation (judges)",
        factory=list,
    )
    eval_every: int = option(
        0,
        "iterations between held-out evaluations logged as eval/* (0 = before and after only)",
    )
    eval_batch_size: int = option(32, "sequences per held-out sampling batch")
    eval_generations: int | None = option(
        None,
        "samples per held-out prompt (default num_generations)",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["eval_batch_size"])
        check_non_negative(self, ["eval_prompts", "eval_every"])
        if self.eval_temperature is not None:
            check_positive(self, ["eval_temperature"])
        if self.eval_generations is not None:
            check_at_least_one(self, ["eval_generations"])


@dataclass
class OutputConfigBase:
    """Where a run is written (every command that trains)."""

    output_dir: str | None = option(None, "default: runs/rebel-YYYYmmdd-HHMMSS")
    overwrite: bool = option(False, "allow replacing a run already in output_dir")
    progress: bool = option(True, "show the progress bar and the final tables")

    def validate(self, prefix: str = "rebel") -> None:
        if self.output_dir is None:  # a fresh, timestamped folder
            self.output_dir = time.strftime(f"runs/{prefix}-%Y%m%d-%H%M%S")


@dataclass
class OutputConfig(OutputConfigBase):
    """The online run's folder: checkpoints, logs, progress."""

    save_every: int = option(
        10,
        "iterations between resumable checkpoints (0 = only the final one)",
    )
    log_completions: int = option(2, "sample completions written per iteration")
    tensorboard: bool = option(
        True,
        "write TensorBoard event files (false drops tensorboard from report_to)",
    )
    report_to: list[str] = option(
        help="trackers getting the metrics, config and sample tables: tensorboard, wandb, trackio "
        "(pip install 'rebel-rl[wandb]' / '[trackio]')",
        factory=lambda: ["tensorboard"],
    )
    tracker_project: str = option("rebel-rl", "wandb/trackio project")
    run_name: str | None = option(
        None,
        "wandb/trackio run name; default: the output_dir folder name",
    )
    push_to_hub: bool = option(
        False,
        "upload final/ (adapter or merged model), tokenizer and a model card at the end (or later: "
        "rebel push RUN_DIR)",
    )
    hub_model_id: str | None = option(
        None,
        "the Hub repository to push to, e.g. your-name/your-model",
    )
    hub_private: bool = option(False, "create the Hub repository as private")

    def validate(self, prefix: str = "rebel") -> None:
        check_non_negative(self, ["save_every", "log_completions"])
        for name in self.report_to:
            check_choice("report_to", name, TRACKERS)
            if name != "tensorboard" and importlib.util.find_spec(name) is None:
                raise ConfigError(f"report_to {name} needs the {name} package: pip install "
                                  f"'rebel-rl[{name}]'")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub needs hub_model_id (e.g. --hub_model_id "
                              "your-name/your-model)")
        super().validate(prefix)

    def trackers(self) -> list[str]:
        """The trackers that receive metrics (`tensorboard: false` drops TensorBoard)."""
        return [name for name in self.report_to if name != "tensorboard" or self.tensorboard]


# The groups every online run has, in the order of --help; then one group per registered algorithm.
RUN_GROUPS = {"model": ModelConfig, "data": DataConfig, "reward": RewardConfig,
              "sampling": SamplingConfig,
              "environment": EnvironmentConfig, "training": TrainingConfig}
LATE_GROUPS = {"evaluation": EvalConfig, "output": OutputConfig}


class RebelConfig(GroupedConfig):
    """All options of an online RL run (REBEL by default), in groups; `RebelConfig(eta=0.5, ...)`
    takes flat names, `RebelConfig(ppo={"clip_range": 0.1})` a group. A name several algorithms
    share (`clip_range`) given flat applies to the chosen algorithm's group. Each field's
    `option(...)` help is the reference docs."""

    @classmethod
    def groups(cls) -> dict[str, type]:
        return {**RUN_GROUPS, **option_groups(), **LATE_GROUPS}

    @classmethod
    def shared_groups(cls) -> set[str]:
        return set(option_groups())

    def active_group(self, owners: list[str]) -> str | None:
        algorithm = self._groups["training"].algorithm
        return algorithm if algorithm in owners else None

    def upgrade(self, pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        """A config saved before DDPO had its own clip_range (its `ddpo` group then held
        `ddpo_buffer_size`) clipped DDPO's ratio with `ppo.clip_range`: keep that value."""
        keys = dict(pairs)
        if ("ddpo.ddpo_buffer_size" in keys and "ddpo.clip_range" not in keys
                and "ppo.clip_range" in keys):
            pairs = [*pairs, ("ddpo.clip_range", keys["ppo.clip_range"])]
        return pairs

    def validate(self, require_rewards: bool = True) -> "RebelConfig":
        """Check every group, then what spans groups (the algorithm's needs); raise one ConfigError
        line for the first problem found. `require_rewards=False` accepts an empty `rewards` list
        (the Python API, where `reward_funcs` supplies the rewards). Also fills in a fresh,
        timestamped output_dir."""
        self.check_finite()
        # An environment's episode return is a reward of its own: `rewards` may then be empty.
        require_rewards = require_rewards and self.environment.environment is None
        for name, group in self._groups.items():
            group.validate(require_rewards) if name == "reward" else group.validate()
        sampling, training = self.sampling, self.training
        if training.minibatch_prompts is None:
            training.minibatch_prompts = sampling.prompts_per_iteration
        if sampling.prompts_per_iteration % training.minibatch_prompts:
            raise ConfigError(f"prompts_per_iteration ({sampling.prompts_per_iteration}) must be a "
                              "multiple of "
                              f"minibatch_prompts ({training.minibatch_prompts})")
        minibatches = sampling.prompts_per_iteration // training.minibatch_prompts
        if minibatches % training.gradient_accumulation_steps:
            steps = training.gradient_accumulation_steps
            raise ConfigError(f"gradient_accumulation_steps ({steps}) "
                              f"must divide the number of minibatches per epoch ({minibatches} = "
                              "prompts_per_iteration / minibatch_prompts)")
        self._check_algorithm()
        return self

    def _check_algorithm(self) -> None:
        """What the chosen algorithm's registry entry says it needs and supports."""
        spec, data, reward = algorithm_spec(self.training.algorithm), self.data, self.reward
        n = self.sampling.num_generations
        if n < spec.min_generations:
            raise ConfigError(f"num_generations must be >= {spec.min_generations} for {spec.name} "
                              "(it compares samples "
                              "of a prompt)")
        needs = {"pair_source": (data.pair_source, lambda s: data.pair_source in s.pair_sources),
                 "pairing": (data.pairing, lambda s: data.pairing in s.pairings),
                 "preference": (reward.preference,
                                lambda s: reward.preference is None or s.preferences)}
        for name, (value, supports) in needs.items():
            if not supports(spec):
                raise ConfigError(f"{name} {value!r} needs algorithm {_supporting(supports)}, got "
                                  f"{spec.name!r}")
        if reward.reward_normalization != "none" and spec.reward_normalization:
            raise ConfigError(spec.reward_normalization.format(value=reward.reward_normalization))
        if data.pairing == "best_worst" and reward.preference is not None:
            raise ConfigError("pairing best_worst ranks samples by reward: use pairing all with a "
                              "preference")
        columns = data.written_columns()
        if data.pair_source == "hybrid" and len(columns) >= n:
            raise ConfigError(f"pair_source hybrid samples num_generations - {len(columns)} "
                              f"completion(s) per prompt: num_generations ({n}) must exceed the "
                              f"{len(columns)} completion_columns")
        if data.pair_source == "offline" and len(columns) != n:
            raise ConfigError(f"pair_source offline takes all num_generations ({n}) completions "
                              "from "
                              f"completion_columns, which has {len(columns)}: make them equal")


def _supporting(supports) -> str:
    """The registered algorithms for which `supports(spec)` holds, for an error message."""
    names = [name for name in algorithm_names() if supports(algorithm_spec(name))]
    return " or ".join(names) or "none"
