"""Token-level PPO with a value model (algorithms/ppo.py): GAE, whitened advantages, clipped
policy and value losses. Its options, its objective and its registry
entry."""
from __future__ import annotations

from dataclasses import dataclass

from ....config.algorithms import AlgorithmSpec, register_algorithm
from ....config.base import check_non_negative, check_positive, check_unit_interval, option
from .base import Objective, ratio_stats, tis_cap_option


@dataclass
class PpoOptions:
    """Token-level PPO with a value model (algorithms/ppo.py)."""

    clip_range: float = option(0.2, "ppo: ratio clipping epsilon")
    clip_range_value: float = option(0.2, "ppo: value clipping around the old values")
    vf_coef: float = option(0.1, "ppo: weight of the value loss")
    gamma: float = option(1.0, "ppo: discount over completion tokens")
    lam: float = option(0.95, "ppo: GAE lambda")
    value_model: str | None = option(
        None,
        "ppo: value-model init; default: the reward model if one is named, else the policy",
    )
    tis_cap: float = tis_cap_option("ppo")

    def validate(self) -> None:
        check_positive(self, ["clip_range", "clip_range_value"])
        check_non_negative(self, ["vf_coef", "tis_cap"])
        check_unit_interval(self, ["gamma", "lam"])


class Ppo(Objective):
    """Token-level PPO with a separate value model, GAE, whitened advantages and clipped losses."""

    token_level = True

    def __init__(self, options, n: int, value_model, kl_coef: float) -> None:
        super().__init__(options, n)
        self.value_model = value_model
        self.value_train_module = value_model
        self.kl_coef = kl_coef

    @classmethod
    def build(cls, options, context):
        """Loads the value model: `value_model`, else the reward model when exactly one is named
        (as in common RLHF PPO), else the policy's own checkpoint."""
        from ....models.value import load_value_model
        from ....rewards.specs import parse_reward_spec

        specs = map(parse_reward_spec, context.reward.rewards)
        models = [spec.target for spec in specs if spec.kind == "model"]
        source = options.value_model or (models[0] if len(models) == 1
                                         else context.model_name_or_path)
        model = context.policy.model
        value_model = load_value_model(source, model.config.vocab_size,
                                       next(model.parameters()).dtype, context.device)
        return cls(options, context.num_generations, value_model, context.reward.kl_coef)

    def modules(self):
        return [self.value_model]

    def set_train_modules(self, modules):
        (self.value_train_module,) = modules

    def prepare(self, batch, policy):
        import torch

        from ....algorithms.importance import attach_importance_weights
        from ....algorithms.ppo import gae, token_rewards, whiten
        from ....models.value import token_values

        options, mask = self.options, batch.rollout.completion_mask
        with torch.no_grad(), policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        rewards = token_rewards(batch.score, batch.extra["token_kl"], mask, self.kl_coef)
        advantages, returns = gae(rewards, values, mask, options.gamma, options.lam)
        batch.extra.update(values=values, returns=returns, advantages=whiten(advantages, mask))
        return {"ppo/value_mean": float((values * mask).sum() / mask.sum().clamp(min=1)),
                **attach_importance_weights(batch.extra, batch.old_logps, options.tis_cap, "ppo")}

    def loss(self, batch, policy):
        from ....algorithms.importance import weighted_advantages
        from ....algorithms.ppo import ppo_policy_loss, ppo_value_loss
        from ....models.value import token_values

        options, mask, extra = self.options, batch.rollout.completion_mask, batch.extra
        logps = batch.token_log_probs(policy)
        policy_loss, ratio, clipped = ppo_policy_loss(
            logps, extra["old_token_logps"], weighted_advantages(extra["advantages"], extra), mask,
            options.clip_range)
        with policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        value_loss = ppo_value_loss(values, extra["values"], extra["returns"], mask,
                                    options.clip_range_value)
        stats = {"ppo/policy_loss": policy_loss.item(), "ppo/value_loss": value_loss.item(),
                 **ratio_stats("ppo", ratio, clipped, mask)}
        return policy_loss + options.vf_coef * value_loss, stats

    def state_dict(self):
        return {"value_model": {k: v.cpu() for k, v in self.value_model.state_dict().items()}}

    def load_state_dict(self, state):
        if "value_model" in state:
            self.value_model.load_state_dict(state["value_model"])


PAPER = ("Proximal Policy Optimization Algorithms. Schulman, Wolski, Dhariwal, Radford, "
         "Klimov. 2017. arXiv 1707.06347")
BIBTEX = r"""@misc{schulman2017ppo,
  title = {Proximal Policy Optimization Algorithms},
  author = {Schulman, John and Wolski, Filip and Dhariwal, Prafulla and Radford, Alec and
            Klimov, Oleg},
  year = {2017},
  eprint = {1707.06347},
  archivePrefix = {arXiv}
}"""

register_algorithm(AlgorithmSpec(
    "ppo", Ppo, PpoOptions, sharding=False,
    other_kind_hint="algorithm ppo is token-level PPO with a value model for causal LMs: for a "
                    "diffusion policy use ddpo (DDPO-style PPO, no value model)",
    reward_normalization="reward_normalization {value!r} does not apply to ppo (it whitens its "
                         "advantages): use none",
    label="PPO", paper=PAPER, bibtex=BIBTEX,
    summary="token-level clipped surrogate with GAE advantages (whitened) and a clipped value "
            "loss; per-token KL penalty, score at the last token; a separate value model "
            "(`AutoModelForTokenClassification`, from the reward model when one is named)"))
