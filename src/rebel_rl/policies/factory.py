"""Which kind of policy a run trains, picked from its model config: the registry of policy kinds.

A kind says how to recognise its sources (`detect`), cheap checks before anything loads (`check`),
how to load a policy from the model and sampling config groups (`load`), and what its policies
support (the policy class's `supports`). `model_type: auto` (the default) asks each kind's `detect`
in registration order; the causal LM, which takes every hub id and transformers folder, comes last.
Adding a kind: its room (a subpackage whose `kind.py` declares its `POLICY_KIND`, a
`base.PolicyKind`), and one `register_policy_kind` line at the bottom of this file.
"""
from __future__ import annotations

import copy

import torch

from ..config import AlgorithmSpec
from ..errors import ConfigError, ModelError
from .base import Policy, PolicyKind
from .causal_lm import kind as causal_lm
from .diffusion import kind as diffusion

_KINDS: dict[str, PolicyKind] = {}


def register_policy_kind(kind: PolicyKind) -> None:
    _KINDS[kind.name] = kind


def policy_kind(model) -> PolicyKind:
    """The kind of policy the ModelConfig `model` names (explicitly by `model_type`, else detected).
    """
    if model.model_type != "auto":
        return _KINDS[model.model_type]
    return next(kind for kind in _KINDS.values() if kind.detect(model))


def is_diffusion(config) -> bool:
    """Whether a RebelConfig names a diffusion policy (see policies/diffusion/kind.py)."""
    return policy_kind(config.model).name == "diffusion"


def object_kind(model) -> PolicyKind:
    """The kind that wraps in-memory model/tokenizer objects (the first registered kind that takes
    them, unless `model_type` names one); ModelError when the named kind takes none."""
    if model.model_type != "auto":
        kind = _KINDS[model.model_type]
        if kind.wrap is None:
            raise ModelError(f"model_type {kind.name} takes no model or tokenizer objects: pass "
                             "paths in the config")
        return kind
    return next(kind for kind in _KINDS.values() if kind.wrap is not None)


def check_policy_source(model, algorithm: AlgorithmSpec, pair_source: str = "online", sampling=None,
                        *,
                        objects: bool = False) -> PolicyKind:
    """Cheap checks before anything loads: the algorithm, pair source and generation backend (of the
    SamplingConfig `sampling`) suit the kind of policy, and the model source exists (not checked for
    a model passed as an object: `objects`). ConfigError or ModelError, one line. Returns the kind.
    """
    kind = object_kind(model) if objects else policy_kind(model)
    if kind.name not in algorithm.policy_kinds:
        raise ConfigError(algorithm.other_kind_hint or f"algorithm {algorithm.name} does not train "
                                                       f"{kind.supports.description}")
    if pair_source != "online" and not kind.supports.dataset_completions:
        raise ConfigError("pair_source hybrid/offline reads written text completions: "
                          f"{kind.supports.description} "
                          "samples all of its images (use pair_source online)")
    if getattr(model, "gradient_checkpointing", False) and not kind.supports.gradient_checkpointing:
        raise ConfigError("gradient_checkpointing is for causal LMs, not "
                          f"{kind.supports.description}: "
                          "set gradient_checkpointing false")
    if not objects:
        kind.check(model)
    backend = "hf" if sampling is None else sampling.generation_backend
    if backend not in kind.backends:
        raise ConfigError(f"generation_backend {backend} does not sample "
                          f"{kind.supports.description}: use {' or '.join(kind.backends)}")
    if backend == "vllm" and not objects:
        from .causal_lm.vllm.sampler import check_vllm_source

        check_vllm_source(model)
    if backend == "vllm_server":  # the servers answer (what they serve is checked once loaded)
        from .causal_lm.vllm.server import check_servers

        check_servers(sampling.vllm_server_url)
    return kind


def load_policy(model, sampling, device: torch.device, max_prompt_length: int = 256, *,
                model_object: torch.nn.Module | None = None, tokenizer=None) -> Policy:
    """The policy the ModelConfig `model` names, on `device`, sampling as the SamplingConfig
    `sampling` says (an unset temperature is the kind's own), with LoRA (pi_ref = adapter disabled)
    or a frozen copy. `model_object` and `tokenizer`, when given, are used instead of loading them
    from the config's path (a peft model keeps its own adapter)."""
    objects = model_object is not None or tokenizer is not None
    kind = object_kind(model) if objects else policy_kind(model)
    if sampling.temperature is None:
        sampling = copy.copy(sampling)
        sampling.temperature = kind.supports.default_temperature
    if objects:
        return kind.wrap(model_object, tokenizer, model, sampling, device, max_prompt_length)
    return kind.load(model, sampling, device, max_prompt_length)


# The registration lines: detection order is registration order, and a causal LM takes any other
# source.
register_policy_kind(diffusion.POLICY_KIND)
register_policy_kind(causal_lm.POLICY_KIND)
