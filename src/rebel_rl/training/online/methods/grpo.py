"""GRPO (algorithms/grpo.py): group-relative advantages, a clipped per-token ratio averaged per
completion, no value model. Its options, its objective and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_choice, check_non_negative, check_positive, option
from ....errors import ConfigError
from .base import BOTH_KINDS, NORMALISES_ITSELF, Objective, ratio_stats, tis_cap_option

# The values algorithms/grpo.py takes (LOSS_TYPES, SCALE_REWARDS), written out because importing
# it loads torch; tests/test_grpo.py checks they agree. true/false keep their earlier meaning.
LOSS_TYPES = ("grpo", "bnpo", "dapo", "dr_grpo")
SCALE_REWARDS = ("group", "batch", "none")
SCALE_ALIASES = {"true": "group", "false": "none"}


def scale_mode(value: str | bool) -> str:
    """`scale_rewards` as one of SCALE_REWARDS: true (also the YAML or CLI text) is "group",
    false is "none"."""
    text = str(value).lower()
    return SCALE_ALIASES.get(text, text)


@dataclass
class GrpoOptions:
    """GRPO (algorithms/grpo.py): group-relative advantages, a clipped ratio, no value model."""

    # the name GRPO's clip had before PPO, GRPO and DDPO each got their own `clip_range`
    renamed = {"epsilon": "clip_range"}

    clip_range: float = option(0.2, "grpo: ratio clipping epsilon")
    scale_rewards: str | bool = option(
        "group", "grpo: centred rewards / std of: group (true), batch, none (false)")
    loss_type: str = option(
        "grpo", "grpo: token averaging: grpo (per completion), bnpo, dapo, dr_grpo")
    tis_cap: float = tis_cap_option("grpo")

    def validate(self) -> None:
        check_positive(self, ["clip_range"])
        check_non_negative(self, ["tis_cap"])
        check_choice("loss_type", self.loss_type, list(LOSS_TYPES))
        if scale_mode(self.scale_rewards) not in SCALE_REWARDS:
            raise ConfigError(f"scale_rewards must be one of {', '.join(SCALE_REWARDS)} (true = "
                              f"group, false = none); got {self.scale_rewards!r}")
        # one spelling from here on, whether it came as a bool, YAML's false or the CLI's "False"
        self.scale_rewards = scale_mode(self.scale_rewards)


class Grpo(Objective):
    """GRPO (algorithms/grpo.py): each prompt's group of samples standardised into advantages, a
    clipped per-token ratio averaged per completion; no value model."""

    token_level = True

    def __init__(self, options, n: int, limits: tuple[int, int] | None = None) -> None:
        super().__init__(options, n)
        self.limits = limits  # (max_new_tokens, max_total_tokens): dr_grpo's L_max
        self.tokens_per_prompt = 0.0  # dapo: the iteration's mean scored tokens per prompt

    @classmethod
    def build(cls, options, context):
        """GRPO with the sampling limits dr_grpo divides by (the sampling and environment
        groups)."""
        limits = (context.options("sampling").max_new_tokens,
                  context.options("environment").max_total_tokens)
        return cls(options, context.num_generations, limits)

    def prepare(self, batch, policy):
        import torch

        from ....algorithms.grpo import grpo_advantages
        from ....algorithms.importance import attach_importance_weights

        advantages = grpo_advantages(batch.reward.view(-1, self.n).float(),
                                     scale_mode(self.options.scale_rewards))
        batch.extra["advantages"] = advantages.flatten()
        # dapo's normaliser: the mean token count of a minibatch over every process's
        # minibatches of this iteration (tokens_per_prompt * the minibatch's prompts), so that
        # after the loop's 1/accumulation and the processes' gradient mean a step is its token
        # sum over the mean step's token count: exact when an epoch is one optimiser step.
        rollout = batch.rollout
        counts = torch.tensor([float(rollout.completion_mask.sum()), len(rollout) / self.n],
                              device=batch.reward.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(counts)
        self.tokens_per_prompt = float(counts[0] / counts[1])
        return attach_importance_weights(batch.extra, batch.old_logps, self.options.tis_cap,
                                         "grpo")

    def max_completion_length(self, rollout) -> int | None:
        """dr_grpo's L_max: max_new_tokens for single-turn text, max_total_tokens for episodes,
        None (the width of the steps) for kinds without token ids (diffusion)."""
        if self.limits is None or not hasattr(rollout, "completion_ids"):
            return None
        max_new_tokens, max_total_tokens = self.limits
        episode = getattr(rollout, "completion_attention_mask", None) is not None
        return max_total_tokens if episode else max_new_tokens

    def loss(self, batch, policy):
        from ....algorithms.grpo import grpo_loss
        from ....algorithms.importance import weighted_advantages

        options, rollout, extra = self.options, batch.rollout, batch.extra
        mask = rollout.completion_mask
        loss, ratio, clipped = grpo_loss(
            batch.token_log_probs(policy), extra["old_token_logps"],
            weighted_advantages(extra["advantages"], extra), mask, options.clip_range,
            options.loss_type,
            max_completion_length=self.max_completion_length(rollout),
            num_tokens=self.tokens_per_prompt * len(rollout) / self.n or None)
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
