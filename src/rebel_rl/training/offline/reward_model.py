"""Reward-model training (`rebel reward-model`): a Bradley-Terry model of preference pairs.

    loss = mean_pairs [ -log sigmoid( r(x, y_chosen) - r(x, y_rejected) ) ]
           + center_rewards_coefficient * mean_pairs [ (r(x, y_chosen) + r(x, y_rejected))^2 ]

r is an `AutoModelForSequenceClassification` with one label, initialised from a causal-LM checkpoint
(the SFT model, as in the REBEL paper): the transformer keeps its weights, the score head is new.
The BT loss sees only reward differences, so the level of r is arbitrary; HF score heads have no
bias to shift after training, so the (optional, default on) centring term keeps the mean reward near
0 instead.

Pairs are encoded by `rewards.reward_model.RewardModel` itself, the class that scores completions
during RL: the model is trained on exactly the token sequences it will read (same text layout, chat
template, truncation, padding). OUTPUT/final is a `model:OUTPUT/final` reward for `rebel train`.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import datasets
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from ...data.pairs import PREFERENCE_COLUMNS, judge_labels, load_train_eval
from ...errors import ModelError, first_line
from ...policies.causal_lm.policy import resolve_dtype
from ...models.pretrained import model_load_errors, resolve_model_path
from ...rewards.reward_model import RewardModel
from ...stage_configs import RewardModelConfig
from .supervised import SupervisedTrainer, batches, preference_accuracy


def train_reward_model(config: RewardModelConfig) -> dict[str, Any]:
    """Train a reward model as `config` says; return a summary: output_dir, final model folder,
    held-out accuracies (also in OUTPUT/eval.json), training seconds. Every config, data and model
    problem is raised before the run directory is written."""
    return train_pair_scorer(config, "Reward model", RewardModel, _Pairs)


def train_pair_scorer(
    config: RewardModelConfig,
    title: str,
    scorer_class: Callable[..., RewardModel],
    pairs_class: type["_Pairs"],
    init: Callable[..., str] | None = None,
) -> dict[str, Any]:
    """The stage behind `rebel reward-model` and `rebel preference-model`: a one-logit classifier
    built by `init` (default `init_reward_model`) from the checkpoint, loaded as `scorer_class`,
    trained on the preference rows as `pairs_class` encodes them and defines their loss, evaluated
    on held-out pairs."""
    config = config.validate()
    train_rows, eval_rows = load_train_eval(config.data, config.optim.seed, PREFERENCE_COLUMNS)
    judge = judge_labels(eval_rows) if eval_rows is not None else None
    trainer = SupervisedTrainer(config, title)
    with tempfile.TemporaryDirectory(prefix="rebel-rm-init-") as folder:
        path = (init or init_reward_model)(
            config.model.model_name_or_path, Path(folder), config.model.dtype, trainer.device
        )
        rm = scorer_class(
            path,
            device=str(trainer.device),
            dtype=resolve_dtype(config.model.dtype, trainer.device),
            batch_size=2 * config.optim.batch_size,
        )
        train = pairs_class(rm, train_rows)
        module = trainer.prepare(rm.model, len(train))
        held_out = pairs_class(rm, eval_rows) if eval_rows is not None else None
        result = trainer.fit(
            lambda rows: train.loss(module, rows, config.reward_model.center_rewards_coefficient),
            (lambda: preference_accuracy(held_out.margins(), judge)) if held_out else None,
        )
        results = {"num_pairs": len(held_out) if held_out else 0,
                   **{k.removeprefix("eval_"): v for k, v in (result["eval"] or {}).items()},
                   **train.reward_stats()}
        final = trainer.save(rm.model, rm.tokenizer, results)
    return {"output_dir": str(trainer.run_dir), "final": str(final), **result, "results": results}


def init_reward_model(name: str, folder: Path, dtype: str, device: torch.device) -> str:
    """Write to `folder` a one-label sequence classifier built from causal-LM checkpoint `name` (new
    score head; pad token set, falling back to EOS, since the model pools at the last non-pad
    token)."""
    path = resolve_model_path(name)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=1, dtype=resolve_dtype(dtype, device)
        )
    except (*model_load_errors(), KeyError) as exc:
        raise ModelError(
            f"cannot load {name!r} as a reward model: {first_line(exc)[:200]}"
        ) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


class _Pairs:
    """Preference rows encoded once by the reward model's own `encode`, and their Bradley-Terry
    loss."""

    def __init__(self, rm: RewardModel, rows: datasets.Dataset) -> None:
        self.rm = rm
        prompts = rows["prompt"]
        self.chosen = [rm.encode(p, c) for p, c in zip(prompts, rows["chosen"])]
        self.rejected = [rm.encode(p, r) for p, r in zip(prompts, rows["rejected"])]

    def __len__(self) -> int:
        return len(self.chosen)

    def rewards(
        self, module: torch.nn.Module, rows: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of the rows' chosen and rejected completions, in one padded forward pass."""
        ids = [self.chosen[i] for i in rows] + [self.rejected[i] for i in rows]
        padded = self.rm.tokenizer.pad({"input_ids": ids}, return_tensors="pt")
        scores = (
            module(
                input_ids=padded["input_ids"].to(self.rm.device),
                attention_mask=padded["attention_mask"].to(self.rm.device),
            )
            .logits[:, 0]
            .float()
        )
        return scores[: len(rows)], scores[len(rows):]

    def loss(
        self, module: torch.nn.Module, rows: list[int], center: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Bradley-Terry loss of a minibatch, plus the centring term; metrics: accuracy and
        margin."""
        chosen, rejected = self.rewards(module, rows)
        loss = -F.logsigmoid(chosen - rejected).mean()
        if center:
            loss = loss + center * ((chosen + rejected) ** 2).mean()
        return loss, {"accuracy": (chosen > rejected).float().mean().item(),
                      "margin": (chosen - rejected).mean().item()}

    @torch.no_grad()
    def margins(self) -> torch.Tensor:
        """r(chosen) - r(rejected) of every row, scored as `RewardModel` scores them (no
        gradient)."""
        rows = batches(len(self), self.rm.batch_size)
        return torch.cat([torch.sub(*self.rewards(self.rm.model, batch)) for batch in rows])

    @torch.no_grad()
    def reward_stats(self) -> dict[str, float]:
        """Mean and standard deviation of the reward over all chosen and rejected completions."""
        scores = torch.cat([torch.cat(self.rewards(self.rm.model, rows))
                            for rows in batches(len(self), self.rm.batch_size)])
        return {"train_mean_reward": scores.mean().item(), "train_reward_std": scores.std().item()}
