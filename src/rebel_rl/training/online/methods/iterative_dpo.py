"""Online (iterative) DPO (algorithms/dpo.py) on each prompt's best and worst sample, against pi_t:
its options, its objective and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_positive, option
from .base import BOTH_KINDS, Objective


@dataclass
class IterativeDpoOptions:
    """Online DPO on each prompt's best and worst sample (algorithms/dpo.py)."""

    beta: float = option(
        0.1,
        "iterative_dpo: DPO temperature (against pi_t, on the best and worst sample)",
    )

    def validate(self) -> None:
        check_positive(self, ["beta"])


class IterativeDpo(Objective):
    """Online DPO: the best and worst of each prompt's samples (by reward) as chosen/rejected,
    against pi_t."""

    def prepare(self, batch, policy):
        reward = batch.reward.view(-1, self.n)
        batch.extra["chosen"] = reward.argmax(-1).repeat_interleave(self.n)
        batch.extra["rejected"] = reward.argmin(-1).repeat_interleave(self.n)
        return {}

    def loss(self, batch, policy):
        from ....algorithms.dpo import dpo_loss

        logps = batch.log_probs(policy).view(-1, self.n)
        old = batch.old_logps.view(-1, self.n)
        chosen = batch.extra["chosen"].view(-1, self.n)[:, :1]
        rejected = batch.extra["rejected"].view(-1, self.n)[:, :1]
        pick = lambda t, i: t.gather(1, i).squeeze(1)  # noqa: E731
        loss = dpo_loss(pick(logps, chosen), pick(logps, rejected), pick(old, chosen),
                        pick(old, rejected), self.options.beta)
        return loss, {}


PAPER = ("Direct Preference Optimization: Your Language Model is Secretly a Reward Model. "
         "Rafailov, Sharma, Mitchell, Ermon, Manning, Finn. NeurIPS 2023. arXiv 2305.18290")
BIBTEX = r"""@inproceedings{rafailov2023dpo,
  title = {Direct Preference Optimization: Your Language Model is Secretly a Reward Model},
  author = {Rafailov, Rafael and Sharma, Archit and Mitchell, Eric and Ermon, Stefano and
            Manning, Christopher D. and Finn, Chelsea},
  booktitle = {Advances in Neural Information Processing Systems},
  volume = {36},
  year = {2023},
  eprint = {2305.18290},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "iterative_dpo", IterativeDpo, IterativeDpoOptions, min_generations=2,
    policy_kinds=BOTH_KINDS, label="Iterative DPO", paper=PAPER, bibtex=BIBTEX,
    summary="DPO against pi_t on each prompt's best and worst sample (by r)"))
