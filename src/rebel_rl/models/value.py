"""A value model for PPO: a transformer with a scalar head giving V(s_t) at every completion
position.

Built with `AutoModelForTokenClassification(num_labels=1)`, so it loads from any causal-LM or
reward-model checkpoint of a supported architecture (the backbone's weights are reused; the head is
new unless the checkpoint's head has the same name and shape, as a Llama reward model's `score`
does). It must share the policy's tokenizer: it reads the policy's token ids.
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import AutoModelForTokenClassification

from ..errors import ConfigError, ModelError, first_line
from .pretrained import model_load_errors, resolve_model_path


def load_value_model(source: str, vocab_size: int, dtype: torch.dtype,
                     device: torch.device) -> torch.nn.Module:
    """Load a value model from `source` (model folder or hub id); ConfigError if its vocabulary
    differs."""
    from transformers.utils import logging as hf_logging

    path = resolve_model_path(source)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the head is new by design: no "newly initialized" report
    try:
        model = AutoModelForTokenClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    except model_load_errors() as exc:
        raise ModelError(f"cannot load value model {source!r}: {first_line(exc)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    if model.config.vocab_size != vocab_size:
        raise ConfigError(f"value_model {source!r} has a vocabulary of {model.config.vocab_size} "
                          f"tokens, the policy {vocab_size}: give a value model that shares the "
                          "policy's tokenizer")
    model.config.pad_token_id = (model.config.pad_token_id if model.config.pad_token_id is not None
                                 else 0)
    # eval: no dropout, so old and new values agree on the first minibatch
    return model.to(device).eval()


def token_values(model: torch.nn.Module, rollout: Any) -> torch.Tensor:
    """V(s_t) for every completion token t (N, C): the value of the state just before token t is
    chosen.

    `rollout` is a causal LM's `TextRollout` (policies/causal_lm/text.py; not imported: models/
    sits below policies/), read for its prompt and completion ids and masks."""
    input_ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], dim=1)
    # Episodes: environment tokens are read (attended) but hold no value target (completion_mask).
    attention_mask = torch.cat([rollout.prompt_mask, rollout.attention], dim=1)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask,
                   position_ids=position_ids).logits
    num_completion = rollout.completion_ids.shape[1]
    # Position p's hidden state has read tokens up to p, i.e. the state in which token p+1 is
    # chosen.
    return logits[:, -num_completion - 1:-1, 0].float() * rollout.completion_mask
