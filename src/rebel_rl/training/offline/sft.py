"""Supervised fine-tuning (`rebel sft`): maximise log pi(completion + EOS | prompt) on
prompt-completion data.

The loss is the mean negative log-likelihood per completion token, EOS included; prompt tokens are
context only. Examples are tokenized and scored exactly as the RL loop scores its samples (prompt on
its own, left-padded; completion on its own with EOS appended; `policy.log_probs` at temperature 1),
so the SFT model starts RL with the very distribution it was trained to have.

Start from a checkpoint, or from scratch (`scratch:small`, `scratch:medium`): a new small Llama with
a word-level tokenizer trained on the training split's prompts and completions. OUTPUT/final loads
with `AutoModelForCausalLM`/`AutoTokenizer` and serves as `model_name_or_path` of `rebel train`,
`rebel reward-model` and `rebel dpo`.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch

from ...config import SamplingConfig
from ...data.pairs import COMPLETION_COLUMNS, load_train_eval
from ...policies.causal_lm.policy import CausalLMPolicy, load_causal_lm_policy
from ...policies.causal_lm.offline import encode_examples, rollout_from_ids
from ...models.pretrained import check_model_source
from ...models.scratch import (
    build_scratch_model,
    corpus_text,
    is_scratch,
    scratch_size,
    train_word_tokenizer,
)
from ...rewards.builtin import completion_text
from ...stage_configs import SFTConfig
from .supervised import SupervisedTrainer, batches

# The stages check total length against max_length themselves; the policy only enforces the context
# window.
NO_PROMPT_LIMIT = 10**9


def sft(config: SFTConfig) -> dict[str, Any]:
    """Fine-tune as `config` says; return a summary: output_dir, final model folder, last eval_loss,
    training seconds. Every config, data and model problem is raised before the run directory is
    written."""
    config = config.validate()
    train_rows, eval_rows = load_train_eval(config.data, config.optim.seed, COMPLETION_COLUMNS)
    trainer = SupervisedTrainer(config, "SFT")
    policy = load_sft_policy(config, train_rows, trainer.device)
    train = SFTExamples(policy, train_rows, config.sft.max_length, "training")
    held_out = (
        SFTExamples(policy, eval_rows, config.sft.max_length, "held-out")
        if eval_rows is not None
        else None
    )
    policy.prepare_training(trainer.prepare(policy.model, len(train)), policy.autocast)
    result = trainer.fit(
        lambda rows: (train.loss(rows), {}),
        (lambda: {"eval_loss": held_out.mean_loss(config.optim.batch_size)}) if held_out else None,
    )
    final = trainer.save(policy.model, policy.tokenizer)
    return {"output_dir": str(trainer.run_dir), "final": str(final), **result}


def load_sft_policy(
    config: SFTConfig, train_rows: datasets.Dataset, device: torch.device
) -> CausalLMPolicy:
    """The model to fine-tune: a checkpoint, or a new scratch model with a tokenizer trained on
    `train_rows`. Its generation config names EOS and pad, so the saved model samples correctly."""
    if is_scratch(config.model.model_name_or_path):
        texts = (
            corpus_text(p, completion_text(c))
            for p, c in zip(train_rows["prompt"], train_rows["completion"])
        )
        tokenizer = train_word_tokenizer(texts, config.sft.vocab_size, config.sft.max_length)
        tokenizer.padding_side = "left"
        model = build_scratch_model(
            scratch_size(config.model.model_name_or_path), tokenizer, config.sft.max_length
        ).to(device)
        return CausalLMPolicy(
            model, tokenizer, max_new_tokens=0, temperature=1.0, max_prompt_length=NO_PROMPT_LIMIT
        )
    check_model_source(config.model.model_name_or_path)
    policy = load_causal_lm_policy(
        config.model,
        SamplingConfig(max_new_tokens=0, temperature=1.0),
        device,
        max_prompt_length=NO_PROMPT_LIMIT,
    )
    policy.reference_model = None  # SFT needs no reference model: free the frozen copy
    generation = policy.model.generation_config
    if generation.eos_token_id is None:
        generation.eos_token_id = policy.tokenizer.eos_token_id
    if generation.pad_token_id is None:
        generation.pad_token_id = policy.tokenizer.pad_token_id
    return policy


class SFTExamples:
    """Tokenized prompt-completion rows and their SFT loss."""

    def __init__(
        self, policy: CausalLMPolicy, rows: datasets.Dataset, max_length: int, what: str
    ) -> None:
        self.policy = policy
        self.prompt_ids, self.completion_ids = encode_examples(
            policy, rows["prompt"], rows["completion"], max_length, what
        )

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def nll(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed negative log-likelihood of the rows' completion tokens (EOS included), and their
        count."""
        rollout = rollout_from_ids(self.policy, [self.prompt_ids[i] for i in rows],
                                   [self.completion_ids[i] for i in rows], texts=[""] * len(rows))
        return -self.policy.log_probs(rollout, temperature=1.0).sum(), rollout.completion_mask.sum()

    def loss(self, rows: list[int]) -> torch.Tensor:
        """Mean negative log-likelihood per completion token of a minibatch."""
        total, count = self.nll(rows)
        return total / count

    def mean_loss(self, batch_size: int) -> float:
        """Mean negative log-likelihood per completion token over all rows (no gradient)."""
        total = count = 0.0
        for rows in batches(len(self), batch_size):
            nll, tokens = self.nll(rows)
            total, count = total + nll.item(), count + tokens.item()
        return total / count
