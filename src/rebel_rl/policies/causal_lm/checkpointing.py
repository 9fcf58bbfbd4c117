"""Gradient checkpointing for a causal LM that trains in eval mode (`gradient_checkpointing: true`).

The update's backward normally keeps every layer's activations from the forward; for long
completions those dominate memory (SmolLM2 at 16 prompts x 2 x 128 tokens: 14 GB at the peak, 7 GB
with checkpointing; docs/benchmark_memory.md). transformers' gradient checkpointing keeps only each
decoder layer's input and recomputes the layer in the backward pass, at the cost of one more forward
through the layers.

transformers checkpoints a layer only while that layer is in training mode, and the RL loop keeps
the model in eval mode so that dropout stays off (the log-probs trained on must be those of the
policy that sampled). So only the decoder layers themselves are flagged as training, not their
submodules: the checkpoint switch reads the layer's own flag, dropout modules read theirs. A model
whose layers apply dropout directly (reading the layer's flag) would then change its outputs;
`enable_gradient_checkpointing` checks that they do not and refuses the model otherwise.
"""
from __future__ import annotations

import torch

from ...errors import ModelError
from ..base import unwrapped


def enable_gradient_checkpointing(model: torch.nn.Module) -> None:
    """Turn on non-reentrant gradient checkpointing in `model` (a transformers causal LM, or a peft
    model around one) while it stays in eval mode. ModelError, one line, for a model that cannot."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    base = unwrapped(model)
    layers = [m for m in base.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not getattr(base, "supports_gradient_checkpointing", False) or not layers:
        raise ModelError(f"gradient_checkpointing: {type(base).__name__} does not support it in "
                         "transformers (set gradient_checkpointing false)")
    probe = torch.tensor([[base.config.bos_token_id or 0] * 4],
                         device=next(base.parameters()).device)
    with torch.no_grad():
        before = base(input_ids=probe, use_cache=False).logits
        _flag(layers, True)
        after = base(input_ids=probe, use_cache=False).logits
        _flag(layers, False)
    if not torch.equal(before, after):
        raise ModelError(f"gradient_checkpointing: {type(base).__name__}'s layers apply dropout "
                         "themselves, so checkpointing them would switch it on; set the model's "
                         "dropout to 0 in its config or set gradient_checkpointing false")
    # transformers 5.20 renamed gradient_checkpointing_enable (kept as a deprecated alias) to this
    enable = getattr(base, "activation_checkpointing_enable", None)
    if enable is not None:
        enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    _flag(layers, True)


def _flag(layers: list[torch.nn.Module], training: bool) -> None:
    """Set the layers' own training flag only (`Module.train` would reach their dropout modules
    too)."""
    for layer in layers:
        layer.training = training
