"""Dataset completions as rollouts of a causal LM (a `CausalLMPolicy`, passed in as `policy`): log
pi(y|x) of a written (prompt, completion) pair, computed exactly as for a sampled one.

`CausalLMPolicy.sample` tokenizes the prompt on its own (left-padded) and generates completion
tokens after it, ending with EOS. Here the completion text is tokenized on its own too (no special
tokens added) and EOS is appended, so SFT targets, DPO pairs and RL samples are all scored through
the same `policy.log_probs` with the same masks.
"""
from __future__ import annotations

import torch

from ...errors import DataError
from ...data.formats import completion_text
from ..base import Policy
from .text import TextRollout, first_eos_mask


def completion_token_ids(policy: Policy, completions: list) -> list[list[int]]:
    """Token ids of each completion (a string or assistant messages) followed by one EOS token."""
    eos = policy.tokenizer.eos_token_id
    if eos is None:  # the generation config names the EOS tokens instead
        eos = int(policy.eos_token_ids[0])
    texts = [completion_text(c) for c in completions]
    encoded = policy.tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return [ids + [eos] for ids in encoded]


def rollout_from_ids(policy: Policy, prompt_ids: list[list[int]], completion_ids: list[list[int]],
                     texts: list[str] | None = None) -> TextRollout:
    """Pad token ids into a Rollout shaped like a sampled one: prompts left-padded (as
    `encode_prompts` does), completions right-padded, `completion_mask` up to and including the
    first EOS."""
    prompts = policy.tokenizer.pad({"input_ids": prompt_ids}, padding=True, return_tensors="pt",
                                   padding_side="left")
    pad = policy.tokenizer.pad_token_id
    width = max(len(ids) for ids in completion_ids)
    completions = torch.tensor(
        [ids + [pad] * (width - len(ids)) for ids in completion_ids], dtype=torch.long
    )
    mask, has_eos = first_eos_mask(completions, policy.eos_token_ids)
    device = policy.device
    if texts is None:
        texts = policy.tokenizer.batch_decode(completion_ids, skip_special_tokens=True)
    return TextRollout(
        prompts["input_ids"].to(device),
        prompts["attention_mask"].to(device),
        completions.to(device),
        mask.to(device),
        has_eos.to(device),
        list(texts),
    )


def rollout_from_text(policy: Policy, prompts: list, completions: list[str]) -> TextRollout:
    """A Rollout of dataset completions, so that `policy.log_probs(rollout)` is log pi(y + EOS | x)
    computed exactly as for sampled completions. Prompts longer than the policy allows raise
    DataError."""
    if len(prompts) != len(completions):
        raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
    return rollout_from_ids(
        policy,
        policy.prompt_token_ids(prompts),
        completion_token_ids(policy, completions),
        [completion_text(c) for c in completions],
    )


def encode_examples(policy: Policy, prompts: list, completions: list, max_length: int,
                    what: str = "training") -> tuple[list[list[int]], list[list[int]]]:
    """Prompt ids and completion-plus-EOS ids of dataset examples, tokenized once up front;
    DataError for the first example with more than `max_length` tokens in all (`what` names the data
    in it)."""
    prompt_ids: list[list[int]] = []
    for start in range(0, len(prompts), 512):
        prompt_ids += policy.prompt_token_ids(prompts[start:start + 512], first_index=start)
    completion_ids = completion_token_ids(policy, completions)
    for index, (prompt, completion) in enumerate(zip(prompt_ids, completion_ids)):
        if len(prompt) + len(completion) > max_length:
            raise DataError(
                f"{what} example {index} has {len(prompt) + len(completion)} tokens (prompt "
                f"{len(prompt)}, "
                f"completion {len(completion) - 1} + EOS), more than max_length={max_length}: "
                f"raise max_length "
                "or shorten the example"
            )
    return prompt_ids, completion_ids
