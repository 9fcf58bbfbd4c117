"""Offline DPO (`rebel dpo`): the preference-data baseline that needs no reward model and no
sampling.

Minimises `algorithms.dpo.dpo_loss` over a fixed preference dataset, with pi_ref the start model
held fixed (a frozen copy, or the model with its LoRA adapter disabled). Sequence log-probs of the
chosen and rejected completions come from `policy.log_probs` on `rollout_from_text`-shaped rollouts:
the same tokenization, EOS handling and temperature as the RL loop's samples. Held-out pairs are
ranked by the implicit reward beta * (log pi - log pi_ref): accuracy against the labels and, if
present, against the noise-free `judge_prefers_chosen` labels.
"""
from __future__ import annotations

from typing import Any

import datasets
import torch

from ...algorithms.dpo import dpo_loss, implicit_margin, preference_metrics
from ...config import SamplingConfig
from ...data.pairs import PREFERENCE_COLUMNS, judge_labels, load_train_eval
from ...policies.causal_lm.policy import CausalLMPolicy, load_causal_lm_policy
from ...policies.causal_lm.offline import encode_examples, rollout_from_ids
from ...models.pretrained import check_model_source
from ...stage_configs import DPOConfig
from .sft import NO_PROMPT_LIMIT
from .supervised import SupervisedTrainer, batches, preference_accuracy


def dpo(config: DPOConfig) -> dict[str, Any]:
    """Train with offline DPO as `config` says; return a summary: output_dir, final model folder,
    held-out metrics (also in OUTPUT/eval.json), training seconds. Every config, data and model
    problem is raised before the run directory is written."""
    config = config.validate()
    train_rows, eval_rows = load_train_eval(config.data, config.optim.seed, PREFERENCE_COLUMNS)
    judge = judge_labels(eval_rows) if eval_rows is not None else None
    trainer = SupervisedTrainer(config, "DPO")
    check_model_source(config.model.model_name_or_path)
    policy = load_causal_lm_policy(
        config.model,
        SamplingConfig(max_new_tokens=0, temperature=config.dpo.temperature),
        trainer.device,
        lora=config.lora if config.lora.use_lora else None,
        max_prompt_length=NO_PROMPT_LIMIT,
    )
    train = _PreferencePairs(policy, train_rows, config, "training")
    held_out = (
        _PreferencePairs(policy, eval_rows, config, "held-out") if eval_rows is not None else None
    )
    # The pi_ref passes bypass the prepared module: they get the trainer's autocast.
    policy.prepare_training(trainer.prepare(policy.model, len(train)), trainer.accelerator.autocast)
    # Eval mode throughout (no dropout): pi and pi_ref must be the same function at the start.
    result = trainer.fit(
        train.loss, (lambda: held_out.evaluate(judge)) if held_out else None, train_mode=False
    )
    results = {"num_pairs": len(held_out) if held_out else 0,
               **{k.removeprefix("eval_"): v for k, v in (result["eval"] or {}).items()}}
    model = policy.merged_model() if config.lora.use_lora else policy.model
    final = trainer.save(model, policy.tokenizer, results)
    return {"output_dir": str(trainer.run_dir), "final": str(final), **result, "results": results}


class _PreferencePairs:
    """Tokenized preference rows; their DPO loss and held-out ranking metrics."""

    def __init__(
        self, policy: CausalLMPolicy, rows: datasets.Dataset, config: DPOConfig, what: str
    ) -> None:
        self.policy = policy
        self.beta = config.dpo.beta
        self.prompt_ids, self.chosen_ids = encode_examples(
            policy, rows["prompt"], rows["chosen"], config.dpo.max_length, f"{what} (chosen)"
        )
        _, self.rejected_ids = encode_examples(
            policy, rows["prompt"], rows["rejected"], config.dpo.max_length, f"{what} (rejected)"
        )
        # log pi_ref never changes: computed once per row, on first use.
        self.ref_logps = torch.full((len(self.prompt_ids), 2), float("nan"))

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def logps(self, rows: list[int], reference: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Sequence log-probs of the rows' chosen and rejected completions (one padded batch)."""
        prompts = [self.prompt_ids[i] for i in rows]
        completions = [self.chosen_ids[i] for i in rows] + [self.rejected_ids[i] for i in rows]
        rollout = rollout_from_ids(
            self.policy, prompts + prompts, completions, texts=[""] * len(completions)
        )
        logps = self.policy.log_probs(rollout, reference=reference)
        return logps[: len(rows)], logps[len(rows):]

    def reference_logps(self, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        missing = [i for i in rows if torch.isnan(self.ref_logps[i, 0])]
        if missing:
            chosen, rejected = self.logps(missing, reference=True)
            self.ref_logps[missing] = torch.stack([chosen, rejected], dim=1).float().cpu()
        cached = self.ref_logps[rows].to(self.policy.device)
        return cached[:, 0], cached[:, 1]

    def loss(self, rows: list[int]) -> tuple[torch.Tensor, dict[str, float]]:
        """The DPO loss of a minibatch and TRL's implicit-reward metrics."""
        ref_chosen, ref_rejected = self.reference_logps(rows)
        chosen, rejected = self.logps(rows)
        loss = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta)
        return loss, preference_metrics(chosen, rejected, ref_chosen, ref_rejected, self.beta)

    def evaluate(self, judge: list[bool] | None) -> dict[str, float]:
        """Held-out DPO loss and implicit-reward ranking accuracy (vs labels, and vs the judge if
        given)."""
        margins, losses = [], []
        for rows in batches(len(self), 32):
            ref_chosen, ref_rejected = self.reference_logps(rows)
            chosen, rejected = self.logps(rows)
            margins.append(implicit_margin(chosen, rejected, ref_chosen, ref_rejected, self.beta))
            losses.append(
                dpo_loss(chosen, rejected, ref_chosen, ref_rejected, self.beta) * len(rows)
            )
        margins = torch.cat(margins)
        return {
            "eval_loss": (sum(losses) / len(self)).item(),
            **preference_accuracy(margins, judge),
        }
