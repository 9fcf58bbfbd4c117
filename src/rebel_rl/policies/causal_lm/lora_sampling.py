"""Sampling from a LoRA policy with its adapter folded into the weights.

A LoRA layer computes W x + scale * B (A x): at every decoded token, two extra small matmuls per
layer, which on a CPU cost about a fifth of the sampling time (docs/benchmark_iteration.md). Folding
the adapter in once per sample, W' = W + scale * B A, makes each layer one matmul again. W' is a new
tensor that replaces W only for the duration: W itself is never modified, so pi_ref (the adapter
disabled) stays bit-exact, where peft's merge/unmerge round trip would move it by a rounding error
each time. The price is a temporary copy of the adapted weights, which is why only CPU runs do it
(on a GPU that memory is better left to the batch; GPU users sample with vLLM).
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch

ENABLED = True  # off only in benchmarks/iteration_breakdown.py, which measures what folding saves


def can_fold_adapter(model: torch.nn.Module) -> bool:
    """A peft LoRA model on the CPU whose adapted weights are plain floating-point tensors (not
    sharded, not quantized) and whose adapters are plain LoRA (no DoRA)."""
    if not ENABLED or not hasattr(model, "disable_adapter"):
        return False
    layers = list(_lora_layers(model))
    if not layers:
        return False
    for layer in layers:
        weight = layer.get_base_layer().weight
        if (
            weight.device.type != "cpu"
            or not weight.is_floating_point()
            or type(weight.data) is not torch.Tensor
        ):
            return False
        if any(layer.use_dora.get(name, False) for name in layer.active_adapters):
            return False
    return True


@contextlib.contextmanager
def adapter_folded(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """`model` computing W + scale * B A in each adapted layer's single matmul, for the duration."""
    swapped = []
    try:
        with torch.no_grad():
            for layer in _lora_layers(model):
                base = layer.get_base_layer()
                swapped.append((base, base.weight))
                base.weight = torch.nn.Parameter(folded_weight(layer), requires_grad=False)
        with model.disable_adapter():
            yield model
    finally:
        for base, weight in swapped:
            base.weight = weight


def folded_weight(layer) -> torch.Tensor:
    """A peft LoRA layer's base weight with its active adapters added, W + scale * B A, as a new
    tensor."""
    folded = layer.get_base_layer().weight.detach().clone()
    for name in layer.active_adapters:
        if name in layer.lora_A:
            folded += layer.get_delta_weight(name).to(folded.dtype)
    return folded


def _lora_layers(model: torch.nn.Module):
    from peft.tuners.lora import LoraLayer

    for module in model.modules():
        if isinstance(module, LoraLayer) and not module.merged and not module.disable_adapters:
            yield module
