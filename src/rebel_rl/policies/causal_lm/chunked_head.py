"""Completion log-probs, the LM head run in chunks of positions (`logprob_chunk_size`).

The full path materialises (rows x completion positions x vocab) logits, and autograd keeps copies
of them (the gather, the temperature division, the log-softmax): for a 49k vocabulary that is most
of the update's memory. Here the model's forward runs with its head swapped for an identity, so the
same forward (packed prompts, position ids, masks, DDP hooks) returns final hidden states at the
completion positions; `chunked_token_log_probs` then applies the head `chunk_size` positions at a
time and recomputes each chunk's logits in the backward. Only a plain `torch.nn.Linear` head held
as `lm_head` qualifies (not a LoRA-wrapped or sharded head), and only a model that applies nothing
after its head (no logit soft-capping or scaling); anything else takes the full path.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from ...algorithms.chunked_logprobs import chunked_token_log_probs
from ..base import unwrapped

# Config fields through which some architectures transform logits after the head (Gemma 2, Cohere,
# Granite): with any of them set, hidden states through the bare head are not the model's logits.
_POST_HEAD_FIELDS = ("final_logit_softcapping", "logit_scale", "logits_scaling")


def chunkable_head(model: torch.nn.Module) -> torch.nn.Linear | None:
    """The plain Linear head of `model` (a transformers causal LM, possibly inside peft and/or a
    DDP wrapper) when the chunked path is exact for it, else None."""
    base = unwrapped(getattr(model, "module", model))
    get_head = getattr(base, "get_output_embeddings", None)
    head = get_head() if get_head is not None else None
    if type(head) is not torch.nn.Linear or getattr(base, "lm_head", None) is not head:
        return None
    config = getattr(base, "config", None)
    if any(getattr(config, name, None) not in (None, 1, 1.0) for name in _POST_HEAD_FIELDS):
        return None
    return head


@contextlib.contextmanager
def head_skipped(model: torch.nn.Module) -> Iterator[None]:
    """While inside, `model`'s forward returns final hidden states in place of logits."""
    base = unwrapped(getattr(model, "module", model))
    head = base.lm_head
    base.lm_head = torch.nn.Identity()
    try:
        yield
    finally:
        base.lm_head = head


def chunked_completion_logps(hidden: torch.Tensor, head: torch.nn.Linear,
                             completion_ids: torch.Tensor, temperature: float,
                             chunk_size: int) -> torch.Tensor:
    """Log softmax(head(hidden) / temperature) at `completion_ids`, (N, C) float32, from hidden
    (N, C, H), never holding more than `chunk_size` positions' logits."""
    hidden = hidden.to(head.weight.dtype)  # autocast may hand back another dtype
    logps = chunked_token_log_probs(hidden, head.weight, head.bias, completion_ids, temperature,
                                    chunk_size)
    return logps.float()  # the full path's dtype whatever the model's
