"""How one iteration's batch becomes a loss, per algorithm: the only part of the online loop that differs.

Every objective sees the same `Batch` (rollouts from pi_t, log pi_t, KL to pi_ref, the score and the
shaped reward `score - kl_coef * KL`), may precompute per-iteration quantities in `prepare` (advantages,
a baseline, values, chosen/rejected), and turns a minibatch into a loss in `loss`. The math itself lives
in `rebel_rl.algorithms`, one pure function per equation.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..algorithms import (dpo_loss, gae, policy_gradient_loss, ppo_policy_loss, ppo_value_loss, rebel_loss,
                          rebel_preference_loss, rloo_advantages, token_rewards, update_moving_baseline, whiten)
from ..policies.base import Rollout
from .pairs import best_worst_rows


@dataclass
class Batch:
    """One iteration's rollouts and per-row tensors (n consecutive rows per prompt)."""

    rollout: Rollout
    old_logps: torch.Tensor  # (N,) log pi_t(y|x), fixed for the iteration
    score: torch.Tensor  # (N,) reward-function score minus the missing-EOS penalty
    kl: torch.Tensor  # (N,) log pi_t(y|x) - log pi_ref(y|x)
    reward: torch.Tensor  # (N,) score - kl_coef * kl: what sequence-level algorithms maximise
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-row tensors an objective adds

    def select(self, rows: torch.Tensor) -> "Batch":
        """The rows `rows` of every per-row field."""
        pick = lambda t: t[rows.to(t.device)]  # noqa: E731
        return replace(self, rollout=self.rollout.select(rows), old_logps=pick(self.old_logps),
                       score=pick(self.score), kl=pick(self.kl), reward=pick(self.reward),
                       extra={k: pick(v) for k, v in self.extra.items()})


class Objective:
    """Base: sequence-level log-probs, no per-iteration state, no extra modules."""

    token_level = False  # needs per-token log pi_t and log pi_ref (PPO)

    def __init__(self, config) -> None:
        self.config = config
        self.n = config.num_generations

    def prepare(self, batch: Batch, policy) -> dict[str, float]:
        """Per-iteration precomputation, once after scoring; returns metrics to log."""
        return {}

    def loss(self, batch: Batch, policy) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def modules(self) -> list[torch.nn.Module]:
        """Extra trainable modules (optimised with the policy; PPO's value model)."""
        return []

    def set_train_modules(self, modules: list[torch.nn.Module]) -> None:
        """Receive the accelerate-prepared versions of `modules()`."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class Rebel(Objective):
    """REBEL: regress (1/eta) * (difference of log-ratios) onto the reward difference, over all pairs
    (`pairing: all`) or over each prompt's best and worst completion (`pairing: best_worst`, whose other
    completions are not even scored by the policy)."""

    def loss(self, batch, policy):
        n = self.n
        if self.config.pairing == "best_worst":
            batch, n = batch.select(best_worst_rows(batch.reward, n)), 2
        logps = policy.log_probs(batch.rollout).view(-1, n)
        return rebel_loss(logps, batch.old_logps.view(-1, n), batch.reward.view(-1, n), self.config.eta), {}


class RebelPreference(Objective):
    """REBEL for general preferences: regress (1/eta) * (difference of log-ratios) onto
    P(y_i > y_j|x) - 1/2 - kl_coef * (KL_i - KL_j), over all pairs; the loop puts each row's preferences
    against its prompt's other completions in `batch.extra["preference"]` (N, n)."""

    def loss(self, batch, policy):
        n = self.n
        logps = policy.log_probs(batch.rollout).view(-1, n)
        loss = rebel_preference_loss(logps, batch.old_logps.view(-1, n), batch.extra["preference"].view(-1, n, n),
                                     self.config.eta, kl=batch.kl.view(-1, n), kl_coef=self.config.kl_coef)
        return loss, {}


class Reinforce(Objective):
    """REINFORCE with a moving-average baseline over iterations."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.baseline: float | None = None

    def prepare(self, batch, policy):
        baseline = self.baseline if self.baseline is not None else float(batch.reward.float().mean())
        batch.extra["advantages"] = batch.reward - baseline
        self.baseline = update_moving_baseline(self.baseline, batch.reward, self.config.baseline_decay)
        return {"baseline": baseline}

    def loss(self, batch, policy):
        return policy_gradient_loss(policy.log_probs(batch.rollout), batch.extra["advantages"]), {}

    def state_dict(self):
        return {"baseline": self.baseline}

    def load_state_dict(self, state):
        self.baseline = state.get("baseline")


class Rloo(Reinforce):
    """RLOO: REINFORCE whose baseline is the mean reward of the prompt's other samples."""

    def prepare(self, batch, policy):
        batch.extra["advantages"] = rloo_advantages(batch.reward.view(-1, self.n)).flatten()
        return {}


class IterativeDpo(Objective):
    """Online DPO: the best and worst of each prompt's samples (by reward) as chosen/rejected, against pi_t."""

    def prepare(self, batch, policy):
        reward = batch.reward.view(-1, self.n)
        batch.extra["chosen"] = reward.argmax(-1).repeat_interleave(self.n)
        batch.extra["rejected"] = reward.argmin(-1).repeat_interleave(self.n)
        return {}

    def loss(self, batch, policy):
        logps = policy.log_probs(batch.rollout).view(-1, self.n)
        old = batch.old_logps.view(-1, self.n)
        chosen = batch.extra["chosen"].view(-1, self.n)[:, :1]
        rejected = batch.extra["rejected"].view(-1, self.n)[:, :1]
        pick = lambda t, i: t.gather(1, i).squeeze(1)  # noqa: E731
        loss = dpo_loss(pick(logps, chosen), pick(logps, rejected), pick(old, chosen), pick(old, rejected),
                        self.config.beta)
        return loss, {}


class Ppo(Objective):
    """Token-level PPO with a separate value model, GAE, whitened advantages and clipped losses."""

    token_level = True

    def __init__(self, config, value_model: torch.nn.Module) -> None:
        super().__init__(config)
        self.value_model = value_model
        self.value_train_module = value_model

    def modules(self):
        return [self.value_model]

    def set_train_modules(self, modules):
        (self.value_train_module,) = modules

    def prepare(self, batch, policy):
        from ..policies.value import token_values

        config, mask = self.config, batch.rollout.completion_mask
        with torch.no_grad(), policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        rewards = token_rewards(batch.score, batch.extra["token_kl"], mask, config.kl_coef)
        advantages, returns = gae(rewards, values, mask, config.gamma, config.lam)
        batch.extra.update(values=values, returns=returns, advantages=whiten(advantages, mask))
        return {"ppo/value_mean": float((values * mask).sum() / mask.sum().clamp(min=1))}

    def loss(self, batch, policy):
        from ..policies.value import token_values

        config, mask, extra = self.config, batch.rollout.completion_mask, batch.extra
        logps = policy.token_log_probs(batch.rollout)
        policy_loss, ratio, clipped = ppo_policy_loss(logps, extra["old_token_logps"], extra["advantages"], mask,
                                                      config.clip_range)
        with policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        value_loss = ppo_value_loss(values, extra["values"], extra["returns"], mask, config.clip_range_value)
        live = mask.bool()
        stats = {"ppo/policy_loss": policy_loss.item(), "ppo/value_loss": value_loss.item(),
                 "ppo/clip_fraction": clipped.item(), "ppo/ratio_mean": ratio.detach()[live].mean().item(),
                 "ppo/ratio_max_deviation": (ratio.detach()[live] - 1).abs().max().item()}
        return policy_loss + config.vf_coef * value_loss, stats

    def state_dict(self):
        return {"value_model": {k: v.cpu() for k, v in self.value_model.state_dict().items()}}

    def load_state_dict(self, state):
        if "value_model" in state:
            self.value_model.load_state_dict(state["value_model"])


class Ddpo(Objective):
    """DDPO (algorithms/ddpo.py): PPO over a diffusion policy's denoising steps, advantages = rewards
    normalised per prompt (what the model conditions on) over a history of rewards; no value model."""

    token_level = True

    def __init__(self, config) -> None:
        from ..algorithms.ddpo import PromptStatTracker

        super().__init__(config)
        self.tracker = PromptStatTracker(config.ddpo_buffer_size, config.ddpo_min_count)

    def prepare(self, batch, policy):
        keys = batch.rollout.prompt_keys()
        clip = self.config.ddpo_adv_clip
        batch.extra["advantages"] = self.tracker.advantages(keys, batch.reward).clamp(-clip, clip)
        return {"ddpo/advantage_abs_mean": float(batch.extra["advantages"].abs().mean())}

    def loss(self, batch, policy):
        from ..algorithms.ddpo import ddpo_loss

        logps = policy.token_log_probs(batch.rollout)
        loss, ratio, clipped = ddpo_loss(logps, batch.extra["old_token_logps"], batch.extra["advantages"],
                                         self.config.clip_range)
        return loss, {"ppo/clip_fraction": clipped.item(), "ppo/ratio_max_deviation": (ratio.detach() - 1).abs().max().item()}

    def state_dict(self):
        return {"prompt_stats": self.tracker.buffers}

    def load_state_dict(self, state):
        self.tracker.buffers = {k: list(v) for k, v in state.get("prompt_stats", {}).items()}


ALGORITHMS = {"rebel": Rebel, "ppo": Ppo, "reinforce": Reinforce, "rloo": Rloo, "iterative_dpo": IterativeDpo,
              "ddpo": Ddpo}
