"""Each distinct prompt computed once, however many completions share it.

With n samples per prompt, a batch holds every prompt n times. Its keys and values are the same numbers
in each copy, so they are computed once per distinct prompt (all its tokens but the last) and the cache is
indexed out to every row; the rows then run only their last prompt token and their completion. Sampling
(`generate`) and the no-gradient log-prob passes (pi_ref, and pi_t when it is recomputed) use it; the
update's forward does not, so that gradients flow as through any other forward (DDP, FSDP).
Prompts are left-padded, so every row's last column is a real token and the shared part ends at the
same column for all rows.
"""
from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

# transformers renamed `past_key_values` to `cache` (forward, generate and outputs) in its 5.2x releases;
# the vLLM environment pins an older one.
CACHE_ARGUMENT = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
ENABLED = True  # off only in benchmarks/iteration_breakdown.py, which measures what sharing saves


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` computes them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def prompt_groups(prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each run of equal consecutive prompts, each row's run); None when no prompt repeats
    or prompts are a single token (nothing to share)."""
    if not ENABLED or prompt_ids.shape[1] < 2:
        return None
    rows = torch.where(prompt_mask.bool(), prompt_ids, torch.full_like(prompt_ids, -1))
    _, run = torch.unique_consecutive(rows, dim=0, return_inverse=True)
    if int(run[-1]) + 1 == len(run):
        return None
    starts = torch.ones_like(run, dtype=torch.bool)
    starts[1:] = run[1:] != run[:-1]
    return starts.nonzero().squeeze(-1), run


def shared_prompt_cache(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                        groups: tuple[torch.Tensor, torch.Tensor]):
    """The KV cache of every row's prompt but its last token, computed once per distinct prompt."""
    first, run = groups
    mask = prompt_mask[first, :-1]
    output = model(input_ids=prompt_ids[first, :-1], attention_mask=mask, position_ids=positions(mask),
                   use_cache=True)
    cache = getattr(output, CACHE_ARGUMENT)
    cache.batch_select_indices(run.to(mask.device))
    return cache


def completion_logits(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Logits (N, C, V) predicting each completion token (from the last prompt token on), without gradients
    when prompts repeat: the shared prompt part comes from `shared_prompt_cache`."""
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    position_ids = positions(attention_mask)
    num_completion = completion_ids.shape[1]
    groups = prompt_groups(prompt_ids, prompt_mask) if not torch.is_grad_enabled() else None
    if groups is None:
        # Only the last C+1 positions' logits are needed: the one before the first completion token onwards.
        return model(input_ids=torch.cat([prompt_ids, completion_ids], dim=1), attention_mask=attention_mask,
                     position_ids=position_ids, logits_to_keep=num_completion + 1, use_cache=False).logits[:, :-1]
    cache = shared_prompt_cache(model, prompt_ids, prompt_mask, groups)
    tail = torch.cat([prompt_ids[:, -1:], completion_ids], dim=1)
    return model(input_ids=tail, attention_mask=attention_mask, position_ids=position_ids[:, -tail.shape[1]:],
                 **{CACHE_ARGUMENT: cache}).logits[:, :-1]


def generate_sharing_prompts(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                             n: int, **generate_kwargs) -> torch.Tensor:
    """`generate` of n samples per prompt (rows grouped by prompt: (B * n, P + C)), each prompt prefilled once."""
    input_ids, attention_mask = prompt_ids.repeat_interleave(n, dim=0), prompt_mask.repeat_interleave(n, dim=0)
    if ENABLED and n > 1 and prompt_ids.shape[1] > 1:
        first = torch.arange(len(prompt_ids), device=prompt_ids.device)
        groups = (first, first.repeat_interleave(n))
        generate_kwargs[CACHE_ARGUMENT] = shared_prompt_cache(model, prompt_ids, prompt_mask, groups)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)
