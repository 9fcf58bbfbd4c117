"""The policy contract: what the online loop, checkpoints, outputs and evaluation may ask of a
policy.

A policy samples a batch with log-probs (`sample`), recomputes per-token (per-step) log-probs of
stored samples under itself or under the reference pi_ref (`token_log_probs`), saves and loads its
weights, describes a sample for logs and reports, and declares what it supports (`supports`). Both
kinds here, a causal LM (causal_lm/) and a diffusion model (diffusion/), implement `Policy`; their
samples are `Rollout`s. Nothing outside policies/ asks which kind it holds: it asks `supports`.
"""
from __future__ import annotations

import abc
import contextlib
import hashlib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Iterator

import torch

from ..errors import RunDirError


@dataclass(frozen=True)
class PolicySupports:
    """What a kind of policy can do, for the loop, the algorithm registry and the sharding checks.
    """

    description: str  # how errors name the kind: "a causal LM", "a diffusion policy"
    default_temperature: float  # the sampling temperature when the config leaves it unset
    sharding: bool  # trains under FSDP2
    # written completions from a dataset can become rollout rows (hybrid/offline pairs)
    dataset_completions: bool
    images: bool  # samples are images: logs save them as PNGs, reports draw before/after grids
    # `gradient_checkpointing: true` recomputes its layers in the backward
    gradient_checkpointing: bool = False


@dataclass(frozen=True)
class PolicyKind:
    """One kind of policy (the `model_type` value that names it) and how to build it; each kind's
    room declares one and factory.py registers it (detection order is registration order)."""

    name: str
    supports: PolicySupports
    detect: Callable  # (ModelConfig) -> bool: whether `model_type: auto` means this kind
    check: Callable  # (ModelConfig) -> None: ModelError for a source that cannot be this kind
    load: Callable  # (ModelConfig, SamplingConfig, device, max_prompt_length) -> Policy
    # (model object or None, tokenizer or None, ModelConfig, SamplingConfig, device,
    # max_prompt_length) -> Policy: a policy around objects the user already holds (None: the
    # kind takes no objects)
    wrap: Callable | None = None
    backends: tuple[str, ...] = ("hf",)  # the `generation_backend`s it samples with


class Rollout(abc.ABC):
    """Sampled completions, `n` consecutive rows per prompt (a dataclass in each policy kind).

    Every kind has `completion_mask` (N, T) over its actions (tokens up to and including the first
    EOS, or denoising steps), `has_eos` (N,), and `completions` (what rewards receive: text or
    images).
    """

    completion_mask: torch.Tensor
    has_eos: torch.Tensor
    completions: list

    def __len__(self) -> int:
        return self.completion_mask.shape[0]

    def select(self, index: torch.Tensor) -> "Rollout":
        """The rows `index` (a 1-D long tensor) of every field."""
        values = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:  # an optional field the rollout does not have
                values[f.name] = None
            elif isinstance(value, list):
                values[f.name] = [value[i] for i in index.tolist()]
            else:
                values[f.name] = value[index.to(value.device)]
        return type(self)(**values)

    @property
    def lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(-1)

    @property
    def recorded_token_log_probs(self) -> torch.Tensor | None:
        """Per-action log pi_t recorded while sampling, exactly as `token_log_probs` would recompute
        them; None when the kind does not record them."""
        return None

    def completion_token_ids(self) -> list[list[int]] | None:
        """Each completion's token ids up to and including its first EOS (TRL's `completion_ids` for
        rewards); None for kinds whose samples are not tokens."""
        return None

    @abc.abstractmethod
    def conditioning_rows(self) -> torch.Tensor:
        """One row per sample of what the policy conditions on (equal rows for samples of one
        prompt)."""

    def prompt_keys(self) -> list[str]:
        """One string per row naming what the model conditions on (equal for rows of the same
        prompt, and for different prompts the model cannot tell apart)."""
        rows = self.conditioning_rows().detach().cpu().contiguous()
        return [hashlib.sha1(row.numpy().tobytes()).hexdigest()[:16] for row in rows]


class SampleHandle:
    """A draw started by `Policy.start_sample`; this one finished when it was made. A kind that
    samples in the background returns its own, with `done()` false until the samples are in."""

    def __init__(self, rollout: Rollout) -> None:
        self._rollout = rollout

    def done(self) -> bool:
        return True

    def result(self) -> Rollout:
        """The rollout (waiting for it where it is still being drawn)."""
        return self._rollout


class Policy(abc.ABC):
    """A trainable model with a reference pi_ref (the LoRA adapter disabled, or a frozen copy).

    `model` is the plain trainable module (saved, gathered and checkpointed); `train_module` is what
    gradients flow through, the accelerate-wrapped (DDP/FSDP) module once `prepare_training` has
    run.
    """

    supports: ClassVar[PolicySupports]

    def __init__(self, model: torch.nn.Module, *, temperature: float,
                 reference_model: torch.nn.Module | None = None) -> None:
        self.model = model
        self.train_module: torch.nn.Module = model
        self.temperature = temperature
        self.reference_model = reference_model
        # Mixed precision for the passes that do not go through `train_module`.
        self.autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext

    # --- sampling and log-probs
    # ---------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, prompts: list, n: int, *, reference: bool = False,
               temperature: float | None = None
               ) -> Rollout:
        """Sample `n` completions per prompt (rows grouped by prompt) from the policy or from
        pi_ref."""

    @abc.abstractmethod
    def token_log_probs(self, rollout: Rollout, *, reference: bool = False) -> torch.Tensor:
        """Per-action log-probs (N, T) of the rollout's samples, 0 outside `completion_mask`, at the
        policy's temperature; differentiable through `train_module` unless `reference`."""

    def log_probs(self, rollout: Rollout, *, reference: bool = False) -> torch.Tensor:
        """Sequence log-probs (N,): the sum of `token_log_probs`."""
        return self.token_log_probs(rollout, reference=reference).sum(-1)

    def sampling_token_log_probs(self, rollout: Rollout,
                                 current: torch.Tensor | None = None) -> torch.Tensor:
        """log pi_t per action (N, T), fixed for the iteration: as recorded while sampling, else
        `current` (the caller's `token_log_probs` of these rows, detached, made before the weights
        changed), else recomputed without gradients."""
        recorded = rollout.recorded_token_log_probs
        if recorded is not None:
            return recorded
        if current is not None:
            return current
        with torch.no_grad():
            return self.token_log_probs(rollout)

    def start_sample(self, prompts: list, n: int) -> "SampleHandle":
        """Start drawing `n` completions per prompt from the policy; `handle.result()` is the
        Rollout. Torch's RNG is read now, in the caller's thread, so the samples are those
        `sample` would give. By default the draw happens at once (a finished handle): a kind whose
        sampler runs elsewhere (a vLLM server) returns while it samples, so the caller may update
        the weights meanwhile; it keeps the sampled weights until every started draw is done."""
        return SampleHandle(self.sample(prompts, n))

    def drawing_token_log_probs(self, rollout: Rollout) -> torch.Tensor | None:
        """Per-action log-probs of the weights that drew the rollout, as the sampler recorded them
        (what a batch drawn while the weights moved is corrected with); None when nothing was
        recorded: the caller computes them itself before the weights change."""
        return rollout.recorded_token_log_probs

    def sampling_metrics(self) -> dict[str, float]:
        """Diagnostics of the latest sample and `sampling_token_log_probs`, for the iteration's
        metrics (e.g. `vllm/logprob_diff`); none by default."""
        return {}

    @abc.abstractmethod
    def check_prompts(self, prompts: list) -> None:
        """Raise DataError for the first prompt the policy cannot take, before any training."""

    def rollout_from_text(self, prompts: list, completions: list) -> Rollout:
        """Written completions (one per prompt) as rollout rows; only where
        `supports.dataset_completions`."""
        raise NotImplementedError(f"{self.supports.description} cannot score written completions")

    def concat(self, rollouts: list[Rollout]) -> Rollout:
        """The rows of several rollouts of this policy, in order, in one Rollout."""
        raise NotImplementedError(f"{self.supports.description} cannot concatenate rollouts")

    def describe(self, completion: Any) -> Any:
        """A completion as logs and reports keep it (JSON): text as it is; kinds with other samples
        override."""
        return completion

    # --- training
    # ----------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prepare_training(self, train_module: torch.nn.Module,
                         autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        """Take the accelerate-wrapped module that gradients flow through, and the autocast context
        for the passes that bypass it (sampling, pi_ref): one region per call, since autocast caches
        cast weights until its outermost region exits and a region spanning updates would use stale
        ones."""
        self.train_module = train_module
        self.autocast = autocast

    @contextlib.contextmanager
    def sampling_model(self, reference: bool = False) -> Iterator[torch.nn.Module]:
        """The plain model to run without gradients: the policy, or pi_ref when `reference`."""
        if not reference:
            yield self.model
        elif self.reference_model is not None:
            yield self.reference_model
        else:
            with self.model.disable_adapter():
                yield self.model

    # --- weights
    # -----------------------------------------------------------------------------------
    def weights_updated(self) -> None:
        """Called after every optimizer step: the trainable weights changed (a kind that samples
        from a copy of them, e.g. a vLLM engine, syncs it before its next sample). Nothing by
        default."""

    @abc.abstractmethod
    def save_pretrained(self, path: str | Path, model: torch.nn.Module | None = None,
                        state_dict: dict | None = None) -> None:
        """Save the trainable model (the adapter alone under LoRA; `model` instead, e.g. a merged
        one; its weights from `state_dict` when given, e.g. gathered from shards) and what loads it
        back."""

    def load_weights(self, path: Path) -> None:
        """Restore the weights (the adapter under LoRA) saved by `save_pretrained` in `path`, before
        the model is prepared (wrapped or sharded) for training."""
        load_saved_weights(path, self.model)

    def merged_model(self) -> torch.nn.Module:
        """The model with its LoRA adapter folded in (pi_ref is gone after this: call it last)."""
        return self.model.merge_and_unload()


# transformers', diffusers' names
WEIGHT_FILES = ["model.safetensors", "diffusion_pytorch_model.safetensors"]


def unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The model a peft wrapper holds, or `model` itself when it is not wrapped."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def load_saved_weights(path: Path, model: torch.nn.Module) -> None:
    """Load `save_pretrained` weights from `path` into `model`: the adapter alone when the folder
    holds one (a peft model), else the whole state dict; RunDirError when nothing or something else
    is there."""
    from safetensors.torch import load_file

    adapter = path / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(adapter))
        unexpected = getattr(result, "unexpected_keys", [])
    else:
        weights = next((path / name for name in WEIGHT_FILES if (path / name).is_file()), None)
        if weights is None:
            raise RunDirError(f"checkpoint {path} has no model weights: delete it and resume from "
                              "an earlier one")
        # Tied weights (lm_head = embeddings) are saved once; strict=False lets them stay tied.
        unexpected = model.load_state_dict(load_file(weights), strict=False).unexpected_keys
    if unexpected:
        raise RunDirError(f"checkpoint {path} does not match the model ({len(unexpected)} unknown "
                          "weights): resume with the config the run was started with")
