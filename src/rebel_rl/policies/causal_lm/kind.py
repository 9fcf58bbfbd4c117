"""The causal-LM kind of policy: how it is checked and loaded (or wrapped around objects the user
holds), and which generation backend samples it. It takes every source no other kind recognises (a
hub id, a transformers folder, `builtin:smollm2-135m-instruct`, `scratch:`), so factory.py registers
it last.
"""
from __future__ import annotations

from ...models.pretrained import check_model_source
from ..base import Policy, PolicyKind
from .policy import (CausalLMPolicy, load_causal_lm, load_causal_lm_policy, load_tokenizer,
                     wrap_causal_lm_policy)


def _sampling_engine(sampling) -> dict:
    """The policy class (and its options) that samples with the SamplingConfig's backend."""
    if sampling.generation_backend == "vllm":
        from .vllm.sampler import VllmSampledCausalLM  # an engine in this process

        return {"policy_class": VllmSampledCausalLM, "engine_options": sampling}
    if sampling.generation_backend == "vllm_server":
        from .vllm.server import VllmServerSampledCausalLM  # `rebel vllm-serve` servers

        return {"policy_class": VllmServerSampledCausalLM, "engine_options": sampling}
    return {}


def _load_causal_lm(model, sampling, device, max_prompt_length) -> Policy:
    return load_causal_lm_policy(model, sampling, device, max_prompt_length=max_prompt_length,
                                 **_causal_lm_options(model, sampling))


def _wrap_causal_lm(model_object, tokenizer, model, sampling, device, max_prompt_length) -> Policy:
    if model_object is None:  # a tokenizer object with the config's model
        check_model_source(model.model_name_or_path)
        model_object = load_causal_lm(model, device)[0]
    if tokenizer is None:  # the model's own, from where it was loaded
        tokenizer = load_tokenizer(model_object)
    return wrap_causal_lm_policy(model_object, tokenizer, sampling, device,
                                 max_prompt_length=max_prompt_length,
                                 **_causal_lm_options(model, sampling))


def _causal_lm_options(model, sampling) -> dict:
    """What the ModelConfig `model` and SamplingConfig `sampling` ask of a causal LM policy, loaded
    or wrapped alike."""
    return {"lora": model if model.use_lora else None,
            "gradient_checkpointing": model.gradient_checkpointing,
            "logprob_chunk_size": model.logprob_chunk_size, **_sampling_engine(sampling)}


def _check_causal_lm(model) -> None:
    check_model_source(model.model_name_or_path)


# The kind, as factory.py registers it.
POLICY_KIND = PolicyKind("causal_lm", CausalLMPolicy.supports, lambda model: True, _check_causal_lm,
                         _load_causal_lm, _wrap_causal_lm, backends=("hf", "vllm", "vllm_server"))
