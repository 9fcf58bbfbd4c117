"""How one iteration's batch becomes a loss, per algorithm: the only part of the online loop that differs.

Every objective sees the same `Batch` (rollouts from pi_t, log pi_t, KL to pi_ref, the score and the
shaped reward `score - kl_coef * KL`), may precompute per-iteration quantities in `prepare` (advantages,
a baseline, values, chosen/rejected), and turns a minibatch into a loss in `loss`. The math itself lives
in `rebel_rl.algorithms`, one pure function per equation.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from ...algorithms import (
    apo_loss,
    dpo_loss,
    gae,
    grpo_advantages,
    grpo_loss,
    optimal_value,
    policy_gradient_loss,
    ppo_policy_loss,
    ppo_value_loss,
    rebel_loss,
    rebel_preference_loss,
    rloo_advantages,
    token_rewards,
    update_moving_baseline,
    whiten,
)
from ...config import AlgorithmSpec
from ...policies.base import Policy, Rollout
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
    prompts: list = field(default_factory=list)  # (N,) each row's prompt
    columns: dict[str, list] = field(default_factory=dict)  # (N,) each row's other dataset columns
    # (N, T) log pi_theta per action, with gradients, from a forward made before any optimizer step of the
    # iteration (the loop's forward that also gave log pi_t): the losses use it instead of a second one.
    current_token_logps: torch.Tensor | None = None

    def select(self, rows: torch.Tensor) -> "Batch":
        """The rows `rows` of every per-row field."""
        pick = lambda t: t[rows.to(t.device)]  # noqa: E731
        index = rows.tolist()
        current = self.current_token_logps
        return replace(self, rollout=self.rollout.select(rows), old_logps=pick(self.old_logps),
                       score=pick(self.score), kl=pick(self.kl), reward=pick(self.reward),
                       extra={k: pick(v) for k, v in self.extra.items()},
                       prompts=[self.prompts[i] for i in index] if self.prompts else [],
                       columns={k: [v[i] for i in index] for k, v in self.columns.items()},
                       current_token_logps=None if current is None else pick(current))

    def token_log_probs(self, policy: Policy) -> torch.Tensor:
        """log pi_theta per action (N, T) of the rows, differentiable: the forward already made, else a new one."""
        if self.current_token_logps is not None:
            return self.current_token_logps
        return policy.token_log_probs(self.rollout)

    def log_probs(self, policy: Policy) -> torch.Tensor:
        """log pi_theta(y|x) per row (N,), differentiable: the forward already made, else a new one."""
        if self.current_token_logps is not None:
            return self.current_token_logps.sum(-1)
        return policy.log_probs(self.rollout)


@dataclass
class BuildContext:
    """What an algorithm's objective may need beyond its own option group, when a run starts."""

    policy: Policy
    num_generations: int
    reward: Any  # the RewardConfig group: kl_coef, the preference source, the rewards (PPO's value model)
    model_name_or_path: str  # the policy's source (PPO's value model defaults to it)
    device: Any
    options: Callable[[str], Any]  # another algorithm's option group by name (DDPO reads ppo's clip_range)
    preference_func: Callable | None = None  # a Python preference from the API, in place of reward.preference
    pairing: str = "all"  # the data group's pairing of each prompt's samples (REBEL: all or best_worst)
    # the loop's score of rows (prompts, rollout, columns) -> (N,), before the KL term (A*-PO's V*)
    score: Callable | None = None


class Objective:
    """Base: sequence-level log-probs, no per-iteration state, no extra modules."""

    token_level = False  # needs per-token log pi_t and log pi_ref (PPO)

    def __init__(self, options: Any, n: int) -> None:
        self.options = options
        self.n = n

    @classmethod
    def build(cls, options: Any, context: BuildContext) -> "Objective":
        """The objective for a run: `options` is the algorithm's option group (None if it has none)."""
        return cls(options, context.num_generations)

    def reward_queries(self, num_rows: int) -> int:
        """Completions scored for the training signal in an iteration of `num_rows` rows."""
        return num_rows

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
    (`pairing: all`) or over each prompt's best and worst completion (`pairing: best_worst`).
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
        from ...rewards.preferences import Preference

        return RebelPreference(options, context.num_generations, Preference(source, device=str(context.device)),
                               context.reward.kl_coef)

    def loss(self, batch, policy):
        n = self.n
        if self.pairing == "best_worst":
            batch, n = batch.select(best_worst_rows(batch.reward, n)), 2
        logps = batch.log_probs(policy).view(-1, n)
        return rebel_loss(logps, batch.old_logps.view(-1, n), batch.reward.view(-1, n), self.options.eta), {}


class RebelPreference(Objective):
    """REBEL for general preferences: regress (1/eta) * (difference of log-ratios) onto
    P(y_i > y_j|x) - 1/2 - kl_coef * (KL_i - KL_j), over all pairs; the loop puts each row's preferences
    against its prompt's other completions in `batch.extra["preference"]` (N, n), filled by `prepare`
    from the judge (`preference`)."""

    def __init__(self, options, n: int, preference, kl_coef: float) -> None:
        super().__init__(options, n)
        self.preference = preference
        self.kl_coef = kl_coef

    def prepare(self, batch, policy):
        matrix = self.preference.matrix(batch.prompts, batch.rollout.completions, batch.columns, self.n)
        batch.extra["preference"] = matrix.to(batch.old_logps.device)
        return {}

    def reward_queries(self, num_rows: int) -> int:
        """Each of the n(n-1)/2 compared pairs per prompt reads two completions (so n = 2 counts 2 per prompt)."""
        return num_rows // self.n * self.n * (self.n - 1)

    def loss(self, batch, policy):
        n = self.n
        logps = batch.log_probs(policy).view(-1, n)
        loss = rebel_preference_loss(logps, batch.old_logps.view(-1, n), batch.extra["preference"].view(-1, n, n),
                                     self.options.eta, kl=batch.kl.view(-1, n), kl_coef=self.kl_coef)
        return loss, {}


class Reinforce(Objective):
    """REINFORCE with a moving-average baseline over iterations."""

    def __init__(self, options, n: int) -> None:
        super().__init__(options, n)
        self.baseline: float | None = None

    def prepare(self, batch, policy):
        baseline = self.baseline if self.baseline is not None else float(batch.reward.float().mean())
        batch.extra["advantages"] = batch.reward - baseline
        self.baseline = update_moving_baseline(self.baseline, batch.reward, self.options.baseline_decay)
        return {"baseline": baseline}

    def loss(self, batch, policy):
        return policy_gradient_loss(batch.log_probs(policy), batch.extra["advantages"]), {}

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
        logps = batch.log_probs(policy).view(-1, self.n)
        old = batch.old_logps.view(-1, self.n)
        chosen = batch.extra["chosen"].view(-1, self.n)[:, :1]
        rejected = batch.extra["rejected"].view(-1, self.n)[:, :1]
        pick = lambda t, i: t.gather(1, i).squeeze(1)  # noqa: E731
        loss = dpo_loss(pick(logps, chosen), pick(logps, rejected), pick(old, chosen), pick(old, rejected),
                        self.options.beta)
        return loss, {}


class Ppo(Objective):
    """Token-level PPO with a separate value model, GAE, whitened advantages and clipped losses."""

    token_level = True

    def __init__(self, options, n: int, value_model: torch.nn.Module, kl_coef: float) -> None:
        super().__init__(options, n)
        self.value_model = value_model
        self.value_train_module = value_model
        self.kl_coef = kl_coef

    @classmethod
    def build(cls, options, context):
        """Loads the value model: `value_model`, else the reward model when exactly one is named (as in
        common RLHF PPO), else the policy's own checkpoint."""
        from ...policies.value import load_value_model
        from ...rewards.specs import parse_reward_spec

        specs = map(parse_reward_spec, context.reward.rewards)
        models = [spec.target for spec in specs if spec.kind == "model"]
        source = options.value_model or (models[0] if len(models) == 1 else context.model_name_or_path)
        model = context.policy.model
        value_model = load_value_model(source, model.config.vocab_size, next(model.parameters()).dtype,
                                       context.device)
        return cls(options, context.num_generations, value_model, context.reward.kl_coef)

    def modules(self):
        return [self.value_model]

    def set_train_modules(self, modules):
        (self.value_train_module,) = modules

    def prepare(self, batch, policy):
        from ...policies.value import token_values

        options, mask = self.options, batch.rollout.completion_mask
        with torch.no_grad(), policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        rewards = token_rewards(batch.score, batch.extra["token_kl"], mask, self.kl_coef)
        advantages, returns = gae(rewards, values, mask, options.gamma, options.lam)
        batch.extra.update(values=values, returns=returns, advantages=whiten(advantages, mask))
        return {"ppo/value_mean": float((values * mask).sum() / mask.sum().clamp(min=1))}

    def loss(self, batch, policy):
        from ...policies.value import token_values

        options, mask, extra = self.options, batch.rollout.completion_mask, batch.extra
        logps = batch.token_log_probs(policy)
        policy_loss, ratio, clipped = ppo_policy_loss(logps, extra["old_token_logps"], extra["advantages"], mask,
                                                      options.clip_range)
        with policy.autocast():
            values = token_values(self.value_train_module, batch.rollout)
        value_loss = ppo_value_loss(values, extra["values"], extra["returns"], mask, options.clip_range_value)
        live = mask.bool()
        stats = {"ppo/policy_loss": policy_loss.item(), "ppo/value_loss": value_loss.item(),
                 "ppo/clip_fraction": clipped.item(), "ppo/ratio_mean": ratio.detach()[live].mean().item(),
                 "ppo/ratio_max_deviation": (ratio.detach()[live] - 1).abs().max().item()}
        return policy_loss + options.vf_coef * value_loss, stats

    def state_dict(self):
        return {"value_model": {k: v.cpu() for k, v in self.value_model.state_dict().items()}}

    def load_state_dict(self, state):
        if "value_model" in state:
            self.value_model.load_state_dict(state["value_model"])


class Ddpo(Objective):
    """DDPO (algorithms/ddpo.py): PPO over a diffusion policy's denoising steps, advantages = rewards
    normalised per prompt (what the model conditions on) over a history of rewards; no value model."""

    token_level = True

    def __init__(self, options, n: int, clip_range: float) -> None:
        from ...algorithms.ddpo import PromptStatTracker

        super().__init__(options, n)
        self.clip_range = clip_range
        self.tracker = PromptStatTracker(options.ddpo_buffer_size, options.ddpo_min_count)

    @classmethod
    def build(cls, options, context):
        """DDPO's ratio clipping is PPO's `clip_range` (it is PPO's surrogate over denoising steps)."""
        return cls(options, context.num_generations, context.options("ppo").clip_range)

    def prepare(self, batch, policy):
        keys = batch.rollout.prompt_keys()
        clip = self.options.ddpo_adv_clip
        batch.extra["advantages"] = self.tracker.advantages(keys, batch.reward).clamp(-clip, clip)
        return {"ddpo/advantage_abs_mean": float(batch.extra["advantages"].abs().mean())}

    def loss(self, batch, policy):
        from ...algorithms.ddpo import ddpo_loss

        logps = batch.token_log_probs(policy)
        loss, ratio, clipped = ddpo_loss(logps, batch.extra["old_token_logps"], batch.extra["advantages"],
                                         self.clip_range)
        return loss, {"ppo/clip_fraction": clipped.item(), "ppo/ratio_max_deviation": (ratio.detach() - 1).abs().max().item()}

    def state_dict(self):
        return {"prompt_stats": self.tracker.buffers}

    def load_state_dict(self, state):
        self.tracker.buffers = {k: list(v) for k, v in state.get("prompt_stats", {}).items()}


class Grpo(Objective):
    """GRPO (algorithms/grpo.py): each prompt's group of samples standardised into advantages, a clipped
    per-token ratio averaged per completion; no value model."""

    token_level = True

    def prepare(self, batch, policy):
        advantages = grpo_advantages(batch.reward.view(-1, self.n).float(), self.options.scale_rewards)
        batch.extra["advantages"] = advantages.flatten()
        return {}

    def loss(self, batch, policy):
        logps = batch.token_log_probs(policy)
        loss, ratio, clipped = grpo_loss(logps, batch.extra["old_token_logps"], batch.extra["advantages"],
                                         batch.rollout.completion_mask, self.options.epsilon)
        live = batch.rollout.completion_mask.bool()
        return loss, {"grpo/clip_fraction": clipped.item(),
                      "grpo/ratio_max_deviation": (ratio.detach()[live] - 1).abs().max().item()}


class Apo(Objective):
    """A*-PO (algorithms/apo.py). Stage 1: V*(x) from `vstar_samples` samples of pi_ref, scored by
    the run's score, the first time a prompt is seen (cached, and kept in checkpoints). Stage 2: the
    loop's samples of pi_t, regressing beta2 * (log pi_theta - log pi_ref) onto score - V*;
    log pi_ref is old_logps - kl, so no extra forward."""

    def __init__(self, options, n: int, score: Callable) -> None:
        super().__init__(options, n)
        self.score = score
        self.vstar: dict[str, float] = {}  # prompt key -> V*(x)
        self.new_queries = 0  # pi_ref completions scored for V* in the last `prepare`

    @classmethod
    def build(cls, options, context):
        """Needs the loop's scoring (`context.score`) to score the pi_ref samples for V*."""
        if context.score is None:
            raise ValueError("apo needs BuildContext.score (the loop's scoring) to compute V*")
        return cls(options, context.num_generations, context.score)

    @staticmethod
    def prompt_key(prompt: Any) -> str:
        """The cache key of a prompt (a string, or chat messages)."""
        return prompt if isinstance(prompt, str) else repr(prompt)

    def prepare(self, batch, policy):
        keys = [self.prompt_key(p) for p in batch.prompts]
        first_row: dict[str, int] = {}  # prompts without V* yet -> their first row
        for row, key in enumerate(keys):
            if key not in self.vstar:
                first_row.setdefault(key, row)
        k, rows = self.options.vstar_samples, list(first_row.values())
        self.new_queries = len(rows) * k
        if rows:
            prompts = [batch.prompts[i] for i in rows]
            with torch.no_grad():
                rollout = policy.sample(prompts, k, reference=True)
            columns = {name: [values[i] for i in rows for _ in range(k)]
                       for name, values in batch.columns.items()}
            score = self.score([p for p in prompts for _ in range(k)], rollout, columns)
            values = optimal_value(score.view(-1, k).float(), self.options.beta1)
            self.vstar.update(zip(first_row, values.tolist()))
        vstar = torch.tensor([self.vstar[key] for key in keys], device=batch.score.device)
        batch.extra["vstar"] = vstar
        return {"apo/vstar_mean": float(vstar.mean()), "apo/new_prompts": float(len(rows)),
                "apo/advantage_mean": float((batch.score.float() - vstar).mean())}

    def reward_queries(self, num_rows: int) -> int:
        """The iteration's rows plus the pi_ref samples scored for V* of its new prompts."""
        return num_rows + self.new_queries

    def loss(self, batch, policy):
        ref_logps = batch.old_logps - batch.kl
        loss = apo_loss(batch.log_probs(policy), ref_logps, batch.score, batch.extra["vstar"],
                        self.options.beta2)
        return loss, {}

    def state_dict(self):
        return {"vstar": dict(self.vstar)}

    def load_state_dict(self, state):
        self.vstar = dict(state.get("vstar", {}))


def build_objective(spec: AlgorithmSpec, options: Any, context: BuildContext) -> Objective:
    """The Objective the registry entry `spec` names (training/online/registry.py), built for this run."""
    module, _, name = spec.objective.partition(":")
    return getattr(importlib.import_module(module), name).build(options, context)
