"""GRPO (algorithms/grpo.py): group-relative advantages, a clipped per-token ratio averaged per
completion, no value model. Its options, its objective and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_positive, option
from .base import BOTH_KINDS, NORMALISES_ITSELF, Objective, ratio_stats


@dataclass
class GrpoOptions:
    """GRPO (algorithms/grpo.py): group-relative advantages, a clipped ratio, no value model."""

    # the name GRPO's clip had before PPO, GRPO and DDPO each got their own `clip_range`
    renamed = {"epsilon": "clip_range"}

    clip_range: float = option(0.2, "grpo: ratio clipping epsilon")
    scale_rewards: bool = option(
        True,
        "grpo: divide each group's centred rewards by the group's std",
    )

    def validate(self) -> None:
        check_positive(self, ["clip_range"])


class Grpo(Objective):
    """GRPO (algorithms/grpo.py): each prompt's group of samples standardised into advantages, a
    clipped per-token ratio averaged per completion; no value model."""

    token_level = True

    def prepare(self, batch, policy):
        from ....algorithms.grpo import grpo_advantages

        advantages = grpo_advantages(batch.reward.view(-1, self.n).float(),
                                     self.options.scale_rewards)
        batch.extra["advantages"] = advantages.flatten()
        return {}

    def loss(self, batch, policy):
        from ....algorithms.grpo import grpo_loss

        mask = batch.rollout.completion_mask
        loss, ratio, clipped = grpo_loss(batch.token_log_probs(policy),
                                         batch.extra["old_token_logps"],
                                         batch.extra["advantages"], mask, self.options.clip_range)
        return loss, ratio_stats("grpo", ratio, clipped, mask)


PAPER = ("DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language Models. "
         "Shao, Wang, Zhu, Xu, Song, Bi, Zhang, Zhang, Li, Wu, Guo. 2024. arXiv 2402.03300")
BIBTEX = r"""@misc{shao2024deepseekmath,
  title = {{DeepSeekMath}: Pushing the Limits of Mathematical Reasoning in Open Language Models},
  author = {Shao, Zhihong and Wang, Peiyi and Zhu, Qihao and Xu, Runxin and Song, Junxiao and
            Bi, Xiao and Zhang, Haowei and Zhang, Mingchuan and Li, Y. K. and Wu, Y. and
            Guo, Daya},
  year = {2024},
  eprint = {2402.03300},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "grpo", Grpo, GrpoOptions, min_generations=2, policy_kinds=BOTH_KINDS,
    reward_normalization=NORMALISES_ITSELF.format(name="grpo"),
    label="GRPO", paper=PAPER, bibtex=BIBTEX,
    summary="per-token clipped ratio with one advantage per completion, its reward "
            "standardised within its prompt's group, averaged per completion; no value model"))
