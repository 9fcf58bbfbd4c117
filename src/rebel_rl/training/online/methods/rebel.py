"""REBEL (algorithms/rebel.py): regress (1/eta) * (difference of log-ratios to pi_t) onto the
reward difference; with a preference in place of rewards, onto P(y_i > y_j|x) - 1/2.

Its options, its two objectives (rewards, preferences) and its registry entry.
"""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_positive, option
from .base import BOTH_KINDS, Objective


@dataclass
class RebelOptions:
    """REBEL (algorithms/rebel.py)."""

    eta: float = option(1.0, "REBEL step size: the exact minimiser is pi_t * exp(eta * r)")

    def validate(self) -> None:
        check_positive(self, ["eta"])


class Rebel(Objective):
    """REBEL: regress (1/eta) * (difference of log-ratios) onto the reward difference, over all
    pairs (`pairing: all`) or over each prompt's best and worst completion (`pairing: best_worst`).
    With best_worst all n completions are still scored (to pick the pair) and go through the
    log pi_t forward over all rows; only the chosen pair enters the loss's forward."""

    def __init__(self, options, n: int, pairing: str = "all") -> None:
        super().__init__(options, n)
        self.pairing = pairing

    @classmethod
    def build(cls, options, context):
        """REBEL on rewards, or on a preference (the API's function, else the config's source)."""
        source = context.preference_func or context.reward.preference
        if source is None:
            return cls(options, context.num_generations, context.pairing)
        from ....rewards.preferences import Preference

        return RebelPreference(options, context.num_generations,
                               Preference(source, device=str(context.device)),
                               context.reward.kl_coef)

    def loss(self, batch, policy):
        from ....algorithms.rebel import rebel_loss
        from ..pairs import best_worst_rows

        n = self.n
        if self.pairing == "best_worst":
            batch, n = batch.select(best_worst_rows(batch.reward, n)), 2
        logps = batch.log_probs(policy).view(-1, n)
        return rebel_loss(logps, batch.old_logps.view(-1, n), batch.reward.view(-1, n),
                          self.options.eta), {}


class RebelPreference(Objective):
    """REBEL for general preferences: regress (1/eta) * (difference of log-ratios) onto
    P(y_i > y_j|x) - 1/2 - kl_coef * (KL_i - KL_j), over all pairs; the loop puts each row's
    preferences against its prompt's other completions in `batch.extra["preference"]` (N, n),
    filled by `prepare` from the judge (`preference`)."""

    def __init__(self, options, n: int, preference, kl_coef: float) -> None:
        super().__init__(options, n)
        self.preference = preference
        self.kl_coef = kl_coef

    def prepare(self, batch, policy):
        matrix = self.preference.matrix(batch.prompts, batch.rollout.completions, batch.columns,
                                        self.n)
        batch.extra["preference"] = matrix.to(batch.old_logps.device)
        return {}

    def reward_queries(self, num_rows: int) -> int:
        """Each of the n(n-1)/2 compared pairs per prompt reads two completions (so n = 2 counts
        2 per prompt)."""
        return num_rows // self.n * self.n * (self.n - 1)

    def loss(self, batch, policy):
        from ....algorithms.rebel import rebel_preference_loss

        n = self.n
        logps = batch.log_probs(policy).view(-1, n)
        loss = rebel_preference_loss(logps, batch.old_logps.view(-1, n),
                                     batch.extra["preference"].view(-1, n, n), self.options.eta,
                                     kl=batch.kl.view(-1, n), kl_coef=self.kl_coef)
        return loss, {}


PAPER = ("REBEL: Reinforcement Learning via Regressing Relative Rewards. Gao, Chang, "
         "Zhan, Oertell, Swamy, Brantley, Joachims, Bagnell, Lee, Sun. NeurIPS 2024. "
         "arXiv 2404.16767")
BIBTEX = r"""@inproceedings{gao2024rebel,
  title = {{REBEL}: Reinforcement Learning via Regressing Relative Rewards},
  author = {Gao, Zhaolin and Chang, Jonathan D. and Zhan, Wenhao and Oertell, Owen and
            Swamy, Gokul and Brantley, Kiant{\'e} and Joachims, Thorsten and
            Bagnell, J. Andrew and Lee, Jason D. and Sun, Wen},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {37},
  year = {2024},
  eprint = {2404.16767},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "rebel", Rebel, RebelOptions, min_generations=2, policy_kinds=BOTH_KINDS,
    pair_sources=("online", "hybrid", "offline"), preferences=True,
    pairings=("all", "best_worst"), label="REBEL", paper=PAPER, bibtex=BIBTEX,
    summary="least squares of (1/eta)·(difference of log-ratios to pi_t) onto the reward "
            "difference, all pairs"))
