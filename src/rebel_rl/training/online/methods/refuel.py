"""REFUEL (algorithms/refuel.py): multi-turn REBEL. Per prompt, a dialogue from pi_t up to a random
turn h, n continuations of that shared prefix to their ends; regress (1/eta) * (difference of the
turn-h responses' log-ratios to pi_t) onto the difference of their future rewards (from turn h on).

Its options, its objective and its registry entry; the sampling is the entry's `rollout="branched"`
(training/online/pairs.py, policies/multiturn.py `rollout_branches`).
"""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_non_negative, option
from .base import Objective


@dataclass
class RefuelOptions:
    """REFUEL (algorithms/refuel.py): REBEL's regression on the future reward from a random turn.
    Its step size is REBEL's `eta` (the rebel group): a second field named eta would make the
    flat `--eta` ambiguous, and it is the same step of the same regression."""

    nll_coef: float = option(
        0.0, "refuel: weight of an NLL term on the best continuation's turn-h response (0: the "
        "official code has none)")

    def validate(self) -> None:
        check_non_negative(self, ["nll_coef"])


class Refuel(Objective):
    """REFUEL over each prefix's n continuations (consecutive rows), all pairs. The target of a row
    is its future reward: the loop's reward (score - kl_coef * KL, the KL over turn h's tokens,
    which are the only scored ones) minus the environment rewards of the turns before h, which
    its prefix earned (`reward_to_go` of the rollout's `turn_rewards` from `branch_turns` on); the
    transcript's rewards and the missing-EOS penalty come at the end, so they are future too."""

    def __init__(self, options, n: int, eta: float) -> None:
        super().__init__(options, n)
        self.eta = eta

    @classmethod
    def build(cls, options, context):
        """REFUEL with REBEL's step size `eta` (the rebel option group)."""
        return cls(options, context.num_generations, context.options("rebel").eta)

    def prepare(self, batch, policy):
        from ....algorithms.refuel import reward_to_go

        rollout = batch.rollout
        branch = getattr(rollout, "branch_turns", None)
        if branch is None:
            raise ValueError("refuel needs branched rollouts (AlgorithmSpec.rollout 'branched')")
        device = batch.reward.device
        future_env = reward_to_go(rollout.turn_rewards, branch).to(device)
        prefix = rollout.episode_rewards.to(device) - future_env
        batch.extra["future_reward"] = batch.reward - prefix
        return {"refuel/branch_turn": float(branch.float().mean()),
                "refuel/future_reward": float(batch.extra["future_reward"].mean()),
                "refuel/prefix_reward": float(prefix.mean())}

    def loss(self, batch, policy):
        from ....algorithms.refuel import refuel_loss

        n, options = self.n, self.options
        logps = batch.log_probs(policy).view(-1, n)
        future = batch.extra["future_reward"].view(-1, n)
        nll = None
        if options.nll_coef > 0:  # the best continuation's turn-h response, per token
            best = future.argmax(-1, keepdim=True)
            tokens = batch.rollout.completion_mask.sum(-1).view(-1, n).clamp(min=1)
            nll = -(logps.gather(1, best) / tokens.gather(1, best).to(logps.dtype))
        loss = refuel_loss(logps, batch.old_logps.view(-1, n), future, self.eta,
                           options.nll_coef, nll)
        return loss, {}


PAPER = ("Regressing the Relative Future: Efficient Policy Optimization for Multi-turn RLHF. "
         "Gao, Zhan, Chang, Swamy, Brantley, Lee, Sun. ICLR 2025. arXiv 2410.04612")
BIBTEX = r"""@inproceedings{gao2025refuel,
  title = {Regressing the Relative Future: Efficient Policy Optimization for Multi-turn {RLHF}},
  author = {Gao, Zhaolin and Zhan, Wenhao and Chang, Jonathan D. and Swamy, Gokul and
            Brantley, Kiant{\'e} and Lee, Jason D. and Sun, Wen},
  booktitle = {International Conference on Learning Representations},
  year = {2025},
  eprint = {2410.04612},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "refuel", Refuel, RefuelOptions, min_generations=2, rollout="branched",
    reward_normalization="refuel regresses onto the future reward as it is: use "
                         "reward_normalization none",
    label="REFUEL", paper=PAPER, bibtex=BIBTEX,
    summary="multi-turn REBEL: n continuations of a dialogue prefix cut at a random turn h, least "
            "squares of (1/eta)·(difference of turn-h log-ratios to pi_t) onto the future-reward "
            "difference"))
