"""Micro-batches of an update's minibatch by token budget (`max_tokens_per_microbatch`).

The update (`Update.microbatched`, update.py) keeps the gradient exact by the chain rule rather than
by weighting each micro-batch's loss (docs/long_completions.md); this module only says which rows go
together and trims a micro-batch's shared padding.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch


def microbatch_rows(rollout: Any, n: int, budget: int, at_least: int = 1) -> list[torch.Tensor]:
    """The rollout's rows (n consecutive per prompt) in consecutive micro-batches of at most
    `budget` real tokens (prompt + completion under the masks): whole prompt groups while a group
    fits, its rows one by one when it does not, a row over budget alone; then the largest is halved
    until there are `at_least` (every process must run as many forwards)."""
    tokens = rollout.completion_mask.sum(-1)
    if getattr(rollout, "prompt_mask", None) is not None:
        tokens = tokens + rollout.prompt_mask.sum(-1)
    tokens = tokens.tolist()
    units = []
    for start in range(0, len(tokens), n):
        group = list(range(start, start + n))
        fits = sum(tokens[i] for i in group) <= budget
        units.extend([group] if fits else [[i] for i in group])
    parts: list[list[int]] = []
    for unit in units:
        if parts and sum(tokens[i] for i in parts[-1] + unit) <= budget:
            parts[-1] = parts[-1] + unit
        else:
            parts.append(unit)
    while len(parts) < at_least:
        largest = max((p for p in parts if len(p) > 1), key=lambda p: sum(tokens[i] for i in p))
        k = parts.index(largest)
        parts[k: k + 1] = [largest[: len(largest) // 2], largest[len(largest) // 2:]]
    return [torch.tensor(part) for part in parts]


def narrowed(rollout: Any) -> Any:
    """A token rollout without the padding columns its rows all share (prompts are left-padded,
    completions right-padded), so a micro-batch of short rows costs short forwards; log-probs are
    unchanged (masks and position ids ignore padding). Other kinds come back as they are."""
    if not hasattr(rollout, "completion_ids"):
        return rollout
    # an episode's scored tokens are not a prefix of its completion: cut after what it attends
    attended = getattr(rollout, "completion_attention_mask", None)
    width = max(1, int((rollout.completion_mask if attended is None else attended).sum(-1).max()))
    start = int(rollout.prompt_mask.any(0).long().argmax())
    extra = {} if attended is None else {"completion_attention_mask": attended[:, :width]}
    return replace(rollout, completion_ids=rollout.completion_ids[:, :width],
                   completion_mask=rollout.completion_mask[:, :width], **extra,
                   prompt_ids=rollout.prompt_ids[:, start:],
                   prompt_mask=rollout.prompt_mask[:, start:])
