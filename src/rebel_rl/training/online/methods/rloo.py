"""RLOO (algorithms/rloo.py): REINFORCE whose baseline is the mean reward of the prompt's other
samples. Its options, its objective and its registry entry. It imports no other algorithm's
module: a module imported by another would be registered (and listed) before it."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_non_negative
from .base import BOTH_KINDS, Objective, tis_cap_option


@dataclass
class RlooOptions:
    """RLOO (algorithms/rloo.py): REINFORCE with the leave-one-out baseline."""

    tis_cap: float = tis_cap_option("rloo")

    def validate(self) -> None:
        check_non_negative(self, ["tis_cap"])


class Rloo(Objective):
    """RLOO: REINFORCE whose baseline is the mean reward of the prompt's other samples."""

    def prepare(self, batch, policy):
        from ....algorithms.importance import attach_importance_weights
        from ....algorithms.rloo import rloo_advantages

        batch.extra["advantages"] = rloo_advantages(batch.reward.view(-1, self.n)).flatten()
        return attach_importance_weights(batch.extra, batch.old_logps, self.options.tis_cap,
                                         "rloo")

    def loss(self, batch, policy):
        from ....algorithms.importance import weighted_advantages
        from ....algorithms.reinforce import policy_gradient_loss

        advantages = weighted_advantages(batch.extra["advantages"], batch.extra)
        return policy_gradient_loss(batch.log_probs(policy), advantages), {}


PAPER = ("Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human "
         "Feedback in LLMs. Ahmadian, Cremer, Galle, Fadaee, Kreutzer, Pietquin, Ustun, "
         "Hooker. ACL 2024. arXiv 2402.14740")
BIBTEX = r"""@inproceedings{ahmadian2024rloo,
  title = {Back to Basics: Revisiting {REINFORCE} Style Optimization for Learning from
           Human Feedback in {LLMs}},
  author = {Ahmadian, Arash and Cremer, Chris and Gall{\'e}, Matthias and Fadaee, Marzieh and
            Kreutzer, Julia and Pietquin, Olivier and {\"U}st{\"u}n, Ahmet and Hooker, Sara},
  booktitle = {Proceedings of the 62nd Annual Meeting of the Association for Computational
               Linguistics},
  year = {2024},
  eprint = {2402.14740},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "rloo", Rloo, RlooOptions, min_generations=2, policy_kinds=BOTH_KINDS, label="RLOO",
    paper=PAPER, bibtex=BIBTEX, summary="−(r_i − mean of the prompt's other samples)·log pi(y_i)"))
