"""What every algorithm module shares: the iteration's `Batch`, the `BuildContext` a run gives, the
`Objective` base, the ratio statistics of the clipped-ratio algorithms, and `build_objective`.

An algorithm module (methods/rebel.py, ...) holds its option dataclass, its Objective (how a batch
becomes a loss, calling the pure function of algorithms/) and its one registry entry. Importing a
module must not import torch (`rebel train --help` and config validation import every module), so
this file and the modules name torch only in annotations and import it, and the pure losses,
inside the methods that run when a run trains.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

from ....config import AlgorithmSpec
from ....config.base import option

if TYPE_CHECKING:
    import torch

    from ....policies.base import Policy, Rollout

BOTH_KINDS = ("causal_lm", "diffusion")  # an entry's policy_kinds when it trains either kind
NORMALISES_ITSELF = "{name} normalises rewards per prompt itself: use reward_normalization none"


def tis_cap_option(name: str) -> Any:
    """The `tis_cap` option PPO, GRPO and RLOO each declare (algorithms/importance.py): a batch
    drawn by other weights than pi_t (training.async_rollouts 1) has each sample's loss term
    weighted by min(pi_t(y|x) / pi_sampler(y|x), tis_cap), from sequence log-probs."""
    return option(0.0, f"{name}: truncated importance sampling cap on samples drawn by other "
                       "weights than pi_t (async_rollouts 1): each sample's loss times "
                       "min(pi_t(y|x) / pi_sampler(y|x), cap), per sequence (TRL's "
                       "vllm_importance_sampling_cap is per token); 0: off")


@dataclass
class Batch:
    """One iteration's rollouts and per-row tensors (n consecutive rows per prompt)."""

    rollout: Rollout
    old_logps: torch.Tensor  # (N,) log pi_t(y|x), fixed for the iteration
    score: torch.Tensor  # (N,) reward-function score minus the missing-EOS penalty
    kl: torch.Tensor  # (N,) log pi_t(y|x) - log pi_ref(y|x)
    reward: torch.Tensor  # (N,) score - kl_coef * kl: what sequence-level algorithms maximise
    # per-row tensors an objective adds (advantages, values, chosen/rejected)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)
    prompts: list = field(default_factory=list)  # (N,) each row's prompt
    columns: dict[str, list] = field(default_factory=dict)  # (N,) each row's other dataset columns
    # (N, T) log pi_theta per action, with gradients, from a forward made before any optimizer
    # step of the iteration (the loop's forward that also gave log pi_t): the losses use it
    # instead of a second one.
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
        """log pi_theta per action (N, T) of the rows, differentiable: the forward already made,
        else a new one."""
        if self.current_token_logps is not None:
            return self.current_token_logps
        return policy.token_log_probs(self.rollout)

    def log_probs(self, policy: Policy) -> torch.Tensor:
        """log pi_theta(y|x) per row (N,), differentiable: the forward already made, else a new
        one."""
        if self.current_token_logps is not None:
            return self.current_token_logps.sum(-1)
        return policy.log_probs(self.rollout)


@dataclass
class BuildContext:
    """What a run offers an objective beyond its own option group when the run starts: the run's
    config groups, its policy and device, and the trainer's services (a Python preference, the
    loop's scoring). An objective's `build` reads what it needs and ignores the rest; the
    properties below are the reads the algorithm modules share."""

    config: Any  # the RebelConfig: every group (`config.sampling`, `config.reward`, `config.ppo`)
    policy: Policy
    device: Any
    preference_func: Callable | None = None  # a Python preference from the API (else the config's)
    # the loop's score of rows (prompts, rollout, columns) -> (N,), before the KL term
    score: Callable | None = None

    @property
    def num_generations(self) -> int:
        """Samples per prompt (the sampling group)."""
        return self.config.sampling.num_generations

    @property
    def reward(self) -> Any:
        """The RewardConfig group (kl_coef, the preference source, the named rewards)."""
        return self.config.reward

    @property
    def pairing(self) -> str:
        """The data group's pairing of each prompt's samples."""
        return self.config.data.pairing

    @property
    def model_name_or_path(self) -> str:
        """The policy's source checkpoint (the model group)."""
        return self.config.model.model_name_or_path

    def options(self, name: str) -> Any:
        """Any registered algorithm's option group, by name."""
        return getattr(self.config, name)


class Objective:
    """Base: sequence-level log-probs, no per-iteration state, no extra modules."""

    token_level = False  # needs per-token log pi_t and log pi_ref (PPO)

    def __init__(self, options: Any, n: int) -> None:
        self.options = options
        self.n = n

    @classmethod
    def build(cls, options: Any, context: BuildContext) -> "Objective":
        """The objective for a run: `options` is the algorithm's option group (None if it has
        none)."""
        return cls(options, context.num_generations)

    def reward_queries(self, num_rows: int) -> int:
        """Completions scored for the training signal in an iteration of `num_rows` rows."""
        return num_rows

    def prepare(self, batch: Batch, policy: Policy) -> dict[str, float]:
        """Per-iteration precomputation, once after scoring; returns metrics to log."""
        return {}

    def loss(self, batch: Batch, policy: Policy) -> tuple[torch.Tensor, dict[str, float]]:
        """The minibatch's loss to minimise and its metrics."""
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
        """Restore what `state_dict` kept."""


def ratio_stats(prefix: str, ratio: torch.Tensor, clipped: torch.Tensor,
                mask: torch.Tensor | None = None) -> dict[str, float]:
    """The metrics of a clipped probability ratio, under the algorithm's own `prefix`:
    `clip_fraction` (as the loss returned it), the mean ratio and its largest |ratio - 1| over the
    live actions (`mask`, else every entry)."""
    live = ratio.detach() if mask is None else ratio.detach()[mask.bool()]
    return {f"{prefix}/clip_fraction": clipped.item(), f"{prefix}/ratio_mean": live.mean().item(),
            f"{prefix}/ratio_max_deviation": (live - 1).abs().max().item()}


def build_objective(spec: AlgorithmSpec, options: Any, context: BuildContext) -> Objective:
    """The Objective of the registry entry `spec`, built for this run."""
    return spec.objective.build(options, context)
