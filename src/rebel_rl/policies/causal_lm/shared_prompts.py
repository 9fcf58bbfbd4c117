"""Each distinct prompt computed once, however many completions share it.

With n samples per prompt, a batch holds every prompt n times: the same keys and values, computed n
times over. Sampling (`generate_sharing_prompts`) computes each prompt's cache once (all its tokens
but the last) and repeats it over the n samples. The log-prob passes, with or without gradients
(`completion_logits`), pack each prompt and its completions into one sequence whose attention mask
keeps the completions apart, so one ordinary forward does it (gradients, DDP and FSDP as usual),
when that is cheaper than the padded rows (`packing_pays`: short completions, not long ones).
Prompts are left-padded, so every row's last prompt column is a real token.
"""
from __future__ import annotations

import torch
from transformers.modeling_outputs import CausalLMOutputWithPast

# transformers renamed `past_key_values` to `cache` (forward, generate and outputs) in its 5.2x
# releases; the vLLM environment pins an older one.
CACHE_ARGUMENT = ("cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__
                  else "past_key_values")
ENABLED = True  # off only in benchmarks/iteration_breakdown.py, which measures what sharing saves


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that skip left padding, as `generate` computes them."""
    return (attention_mask.cumsum(-1) - 1).clamp(min=0)


def prompt_groups(prompt_ids: torch.Tensor,
                  prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each run of equal consecutive prompts, each row's run); None when no prompt
    repeats or prompts are a single token (nothing to share)."""
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
                        n: int):
    """The KV cache of each prompt but its last token, computed once and repeated for its n samples.
    """
    mask = prompt_mask[:, :-1]
    output = model(input_ids=prompt_ids[:, :-1], attention_mask=mask, position_ids=positions(mask),
                   use_cache=True)
    cache = getattr(output, CACHE_ARGUMENT)
    cache.batch_repeat_interleave(n)
    return cache


def completion_logits(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                      completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Logits (N, C, V) predicting each completion token (from the last prompt token on);
    `completion_mask` is the attention mask over the completion (an episode's: every dialogue
    token). Rows that repeat a prompt, as a rollout's n samples do, are packed into one sequence per
    prompt (`packed_logits`) where the model's attention takes a custom mask; otherwise one padded
    forward over all rows."""
    groups = prompt_groups(prompt_ids, prompt_mask) if packs_prompts(model) else None
    if groups is not None and packing_pays(_config(model), prompt_ids.shape[1],
                                           completion_ids.shape[1], groups):
        return packed_logits(model, prompt_ids, prompt_mask, completion_ids, completion_mask,
                             groups)
    attention_mask = torch.cat([prompt_mask, completion_mask], dim=1)
    # Only the last C+1 positions' logits are needed: the one before the first completion token
    # onwards.
    return model(input_ids=torch.cat([prompt_ids, completion_ids], dim=1),
                 attention_mask=attention_mask,
                 position_ids=positions(attention_mask), logits_to_keep=completion_ids.shape[1] + 1,
                 use_cache=False).logits[:, :-1]


def packs_prompts(model: torch.nn.Module) -> bool:
    """Whether `packed_logits` is exact for `model`: its attention (eager or SDPA) applies a 4-D
    mask as given, and no sliding window would need a mask of its own."""
    config = _config(model)
    if not ENABLED or config is None:
        return False
    return (getattr(config, "_attn_implementation", None) in ("sdpa", "eager")
            and getattr(config, "sliding_window", None) is None and not config.is_encoder_decoder)


def packing_pays(config, prompt_width: int, completion_width: int,
                 groups: tuple[torch.Tensor, torch.Tensor]) -> bool:
    """Whether packing costs fewer FLOPs than the padded forward it replaces. Packing computes each
    prompt once but attends over one sequence of P + k (C - 1) columns with a dense mask, so its
    attention grows with (k C)^2 where the padded rows' grows with k (P + C)^2: it pays for short
    completions (the demo: about 0.7x the FLOPs) and loses for long ones (1,024 tokens, k = 4:
    about 1.6x, and the score matrices of the math attention kernel, 4x per row, dominate memory).
    Per layer and token the linear layers cost about 2 (4 h^2 + 3 h i) FLOPs, and each attended
    (query, key) pair 4 h (the scores and the weighted sum)."""
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None)
    if not hidden:
        return True
    inner = (getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
             or 4 * hidden)
    first, run = groups
    rows, prompts = len(run), len(first)
    slots = -(-rows // prompts)
    packed = prompt_width + slots * max(completion_width - 1, 1)
    padded = prompt_width + completion_width
    per_token, per_pair = 2 * (4 * hidden ** 2 + 3 * hidden * inner), 4 * hidden
    packed_cost = prompts * (packed * per_token + packed ** 2 * per_pair)
    padded_cost = rows * (padded * per_token + padded ** 2 * per_pair)
    return packed_cost < padded_cost


def packed_logits(model: torch.nn.Module, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
                  completion_ids: torch.Tensor, completion_mask: torch.Tensor,
                  groups: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """`completion_logits` with each prompt computed once, in one forward (so gradients, DDP and
    FSDP see an ordinary forward). A prompt's sequence is its prompt followed by its k completions
    side by side, each without its last token (nothing reads what follows it):

        [pad.. prompt][completion 1][completion 2]...   (G, P + k * (C - 1))

    A completion attends to the prompt and to its own earlier tokens, never to another completion,
    and its position ids continue the prompt's, so every logit is the one of the row's own sequence.
    """
    first, run = groups
    num_rows, width = completion_ids.shape
    block = max(width - 1, 1)
    # each row's place in its prompt's sequence
    slot = torch.arange(num_rows, device=run.device) - first[run]
    slots = int(slot.max()) + 1
    num_prompts, prompt_width = len(first), prompt_ids.shape[1]
    device = prompt_ids.device

    pad = completion_ids.new_zeros(num_rows, block)
    tail_ids = torch.cat([completion_ids, pad], 1)[:, :block]
    tail_mask = torch.cat([completion_mask, pad], 1)[:, :block]
    ids = prompt_ids.new_zeros(num_prompts, slots, block)
    keys = prompt_mask.new_zeros(num_prompts, slots, block)
    ids[run, slot], keys[run, slot] = tail_ids, tail_mask
    input_ids = torch.cat([prompt_ids[first], ids.flatten(1)], 1)
    key_mask = torch.cat([prompt_mask[first], keys.flatten(1)], 1).bool()

    prompt_length = prompt_mask[first].sum(-1, keepdim=True)
    step = torch.arange(block, device=device).repeat(slots)
    position_ids = torch.cat([positions(prompt_mask[first]), prompt_length + step], 1)
    # Which segment each column is: -1 for the prompt, else the completion slot.
    segment = torch.cat([torch.full((prompt_width,), -1, device=device),
                         torch.arange(slots, device=device).repeat_interleave(block)])
    column = torch.arange(len(segment), device=device)
    causal = column[None, :] <= column[:, None]
    same_or_prompt = (segment[None, :] == -1) | (segment[None, :] == segment[:, None])
    allowed = (causal & same_or_prompt)[None] & key_mask[:, None, :]
    # padding attends to itself, not to nothing
    allowed |= torch.eye(len(segment), dtype=torch.bool, device=device)
    attention_mask = allowed[:, None]
    if _config(model)._attn_implementation == "eager":
        dtype = next(model.parameters()).dtype
        attention_mask = torch.zeros(allowed.shape, dtype=dtype, device=device).masked_fill(
            ~allowed, torch.finfo(dtype).min)[:, None]

    keep = 1 + slots * block  # the last prompt position and every completion column
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                   logits_to_keep=keep, use_cache=False).logits
    # Row r reads its first token's logits at the last prompt position, then its own block.
    index = torch.cat([torch.zeros(num_rows, 1, dtype=torch.long, device=device),
                       1 + slot[:, None] * block + torch.arange(width - 1, device=device)[None]], 1)
    return logits[run[:, None], index]


def generate_sharing_prompts(model: torch.nn.Module, prompt_ids: torch.Tensor,
                             prompt_mask: torch.Tensor,
                             n: int, **generate_kwargs) -> torch.Tensor:
    """`generate` of n samples per prompt (rows grouped by prompt: (B * n, P + C)), each prompt
    prefilled once."""
    input_ids, attention_mask = (prompt_ids.repeat_interleave(n, dim=0),
                                 prompt_mask.repeat_interleave(n, dim=0))
    if ENABLED and n > 1 and prompt_ids.shape[1] > 1:
        generate_kwargs[CACHE_ARGUMENT] = shared_prompt_cache(model, prompt_ids, prompt_mask, n)
    return model.generate(input_ids=input_ids, attention_mask=attention_mask, **generate_kwargs)


def _config(model: torch.nn.Module):
    """The transformers config of `model`, or of the model a DDP wrapper holds; None for other
    modules."""
    return getattr(model, "config", None) or getattr(getattr(model, "module", None), "config", None)
