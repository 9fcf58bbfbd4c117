"""REINFORCE with a moving-average baseline (algorithms/reinforce.py): its options, its objective
and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_unit_interval, option
from .base import BOTH_KINDS, Objective


@dataclass
class ReinforceOptions:
    """REINFORCE with a moving-average baseline (algorithms/reinforce.py)."""

    baseline_decay: float = option(
        0.9,
        "reinforce: moving-average baseline b <- decay * b + (1 - decay) * mean reward",
    )

    def validate(self) -> None:
        check_unit_interval(self, ["baseline_decay"])


class Reinforce(Objective):
    """REINFORCE with a moving-average baseline over iterations."""

    def __init__(self, options, n: int) -> None:
        super().__init__(options, n)
        self.baseline: float | None = None

    def prepare(self, batch, policy):
        from ....algorithms.reinforce import update_moving_baseline

        baseline = self.baseline
        if baseline is None:
            baseline = float(batch.reward.float().mean())
        batch.extra["advantages"] = batch.reward - baseline
        self.baseline = update_moving_baseline(self.baseline, batch.reward,
                                               self.options.baseline_decay)
        return {"baseline": baseline}

    def loss(self, batch, policy):
        from ....algorithms.reinforce import policy_gradient_loss

        return policy_gradient_loss(batch.log_probs(policy), batch.extra["advantages"]), {}

    def state_dict(self):
        return {"baseline": self.baseline}

    def load_state_dict(self, state):
        self.baseline = state.get("baseline")


PAPER = ("Simple Statistical Gradient-Following Algorithms for Connectionist "
         "Reinforcement Learning. Williams. Machine Learning 8, 229-256, 1992")
BIBTEX = r"""@article{williams1992reinforce,
  title = {Simple Statistical Gradient-Following Algorithms for Connectionist
           Reinforcement Learning},
  author = {Williams, Ronald J.},
  journal = {Machine Learning},
  volume = {8},
  number = {3-4},
  pages = {229--256},
  year = {1992}
}"""

register_algorithm(AlgorithmSpec(
    "reinforce", Reinforce, ReinforceOptions, policy_kinds=BOTH_KINDS, label="REINFORCE",
    paper=PAPER, bibtex=BIBTEX,
    summary="−(r_i − b)·log pi(y_i), b a moving average of earlier iterations' mean reward"))
