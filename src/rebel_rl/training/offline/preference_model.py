"""Pairwise preference-model training (`rebel preference-model`): a classifier of P(a > b | x) over
the pair.

Each preference row (prompt, chosen, rejected) is shown in both orders, f = the classifier's logit:

    loss = mean_rows [ -log sigmoid(f(x, chosen, rejected)) - log sigmoid(-f(x, rejected, chosen)) ]
    / 2
           + center_rewards_coefficient * mean_rows [ (f(x, chosen, rejected) + f(x, rejected,
           chosen))^2 ]

so the model is antisymmetric in expectation (the second term pulls the two orders' logits to sum to
0). Everything else is the reward-model stage (training/reward_model.py): the same initialisation
from a causal-LM checkpoint, epoch loop, held-out accuracy against labels and judge, and outputs.
The final folder is a `model:OUTPUT/final` preference for `rebel train --preference`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import datasets
import torch
import torch.nn.functional as F

from ...rewards.preference_model import PAIRWISE_FLAG, PreferenceModel
from ...stage_configs import PreferenceModelConfig
from .reward_model import _Pairs, init_reward_model, train_pair_scorer
from .supervised import batches


def train_preference_model(config: PreferenceModelConfig) -> dict[str, Any]:
    """Train a pairwise preference model as `config` says; return the summary the reward-model stage
    returns (held-out accuracy: how often P(chosen > rejected) > 1/2)."""
    return train_pair_scorer(
        config, "Preference model", PreferenceModel, _OrderedPairs, init=init_preference_model
    )


def init_preference_model(name: str, folder: Path, dtype: str, device: torch.device) -> str:
    """`init_reward_model`, with the config marked as a pairwise preference model."""
    path = init_reward_model(name, folder, dtype, device)
    config_file = Path(path) / "config.json"
    config_file.write_text(
        json.dumps({**json.loads(config_file.read_text()), PAIRWISE_FLAG: True}, indent=2)
    )
    return path


class _OrderedPairs(_Pairs):
    """Preference rows encoded in both orders: `chosen` holds (x, chosen, rejected), `rejected`
    holds (x, rejected, chosen); `rewards` then returns the two orders' logits, and margins are
    their difference."""

    def __init__(self, model: PreferenceModel, rows: datasets.Dataset) -> None:
        self.rm = model
        triples = list(zip(rows["prompt"], rows["chosen"], rows["rejected"]))
        self.chosen = [model.encode_pair(p, c, r) for p, c, r in triples]
        self.rejected = [model.encode_pair(p, r, c) for p, c, r in triples]

    def loss(
        self, module: torch.nn.Module, rows: list[int], center: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of both orders, plus the antisymmetry term; metrics: accuracy and
        margin."""
        forward, backward = self.rewards(module, rows)
        loss = -(F.logsigmoid(forward) + F.logsigmoid(-backward)).mean() / 2
        if center:
            loss = loss + center * ((forward + backward) ** 2).mean()
        return loss, {"accuracy": (forward > backward).float().mean().item(),
                      "margin": (forward - backward).mean().item()}

    @torch.no_grad()
    def reward_stats(self) -> dict[str, float]:
        """Mean P(chosen > rejected) over the training rows (both orders averaged), and the mean
        |f(x, a, b) + f(x, b, a)| (0 for an exactly antisymmetric model)."""
        scores = [
            self.rewards(self.rm.model, rows) for rows in batches(len(self), self.rm.batch_size)
        ]
        forward, backward = torch.cat([f for f, _ in scores]), torch.cat([b for _, b in scores])
        probability = (torch.sigmoid(forward) + 1 - torch.sigmoid(backward)) / 2
        return {"train_mean_chosen_probability": probability.mean().item(),
                "train_antisymmetry_gap": (forward + backward).abs().mean().item()}
