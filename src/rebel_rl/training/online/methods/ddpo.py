"""DDPO for diffusion policies (algorithms/ddpo.py): PPO's clipped surrogate over the denoising
steps, advantages = rewards normalised per prompt over a history of rewards; no value model. Its
options, its objective and its registry entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_at_least_one, check_positive, option
from .base import NORMALISES_ITSELF, Objective, ratio_stats


@dataclass
class DdpoOptions:
    """DDPO for diffusion policies (algorithms/ddpo.py): PPO's clip over the denoising steps."""

    # the names before DDPO's fields could share names with other algorithms' groups
    renamed = {"ddpo_buffer_size": "buffer_size", "ddpo_min_count": "min_count"}

    clip_range: float = option(0.2, "ddpo: ratio clipping epsilon")
    buffer_size: int = option(
        16,
        "ddpo: rewards kept per prompt for its mean and std (DDPO's per-prompt stat tracking)",
    )
    min_count: int = option(
        16,
        "ddpo: a prompt with fewer kept rewards is normalised by the batch mean and std",
    )
    ddpo_adv_clip: float = option(
        5.0,
        "ddpo: advantages are clipped to [-ddpo_adv_clip, ddpo_adv_clip]",
    )

    def validate(self) -> None:
        check_at_least_one(self, ["buffer_size", "min_count"])
        check_positive(self, ["clip_range", "ddpo_adv_clip"])


class Ddpo(Objective):
    """DDPO (algorithms/ddpo.py): PPO over a diffusion policy's denoising steps, advantages =
    rewards normalised per prompt (what the model conditions on) over a history of rewards; no
    value model."""

    token_level = True

    def __init__(self, options, n: int) -> None:
        from ....algorithms.ddpo import PromptStatTracker

        super().__init__(options, n)
        self.tracker = PromptStatTracker(options.buffer_size, options.min_count)

    def prepare(self, batch, policy):
        keys = batch.rollout.prompt_keys()
        clip = self.options.ddpo_adv_clip
        batch.extra["advantages"] = self.tracker.advantages(keys, batch.reward).clamp(-clip, clip)
        return {"ddpo/advantage_abs_mean": float(batch.extra["advantages"].abs().mean())}

    def loss(self, batch, policy):
        from ....algorithms.ddpo import ddpo_loss

        logps = batch.token_log_probs(policy)
        loss, ratio, clipped = ddpo_loss(logps, batch.extra["old_token_logps"],
                                         batch.extra["advantages"], self.options.clip_range)
        return loss, ratio_stats("ddpo", ratio, clipped)  # every denoising step is an action

    def state_dict(self):
        return {"prompt_stats": self.tracker.buffers}

    def load_state_dict(self, state):
        self.tracker.buffers = {k: list(v) for k, v in state.get("prompt_stats", {}).items()}


PAPER = ("Training Diffusion Models with Reinforcement Learning. Black, Janner, Du, "
         "Kostrikov, Levine. 2023. arXiv 2305.13301")
BIBTEX = r"""@misc{black2023ddpo,
  title = {Training Diffusion Models with Reinforcement Learning},
  author = {Black, Kevin and Janner, Michael and Du, Yilun and Kostrikov, Ilya and
            Levine, Sergey},
  year = {2023},
  eprint = {2305.13301},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "ddpo", Ddpo, DdpoOptions, policy_kinds=("diffusion",),
    other_kind_hint="algorithm ddpo is PPO for diffusion policies: for a causal LM use ppo",
    reward_normalization=NORMALISES_ITSELF.format(name="ddpo"),
    label="DDPO", paper=PAPER, bibtex=BIBTEX,
    summary="PPO's clipped surrogate over the denoising steps, advantages = rewards normalised "
            "per prompt over a history of rewards, clipped; no value model"))
