"""The registry entries of the online algorithms: each one's option group and what it needs and supports.

One entry per algorithm, registered once into the config layer's registry (config/algorithms.py), which
the config's validation, the command line and the trainer read. The entry's `objective` names the class
in training/online/objectives.py that turns a batch into the loss; that class's `build` makes whatever else the
algorithm needs (PPO its value model, REBEL's preference variant its judge). This module imports no
torch: `rebel train --help` reads it.

Adding an algorithm (docs/architecture.md): its loss in algorithms/, its Objective in objectives.py, its
entry here, its tests.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...config.algorithms import AlgorithmSpec, register_algorithm
from ...config.base import (
    check_at_least_one,
    check_non_negative,
    check_positive,
    check_unit_interval,
)

OBJECTIVES = "rebel_rl.training.online.objectives"
BOTH_KINDS = ("causal_lm", "diffusion")


@dataclass
class RebelOptions:
    """REBEL (algorithms/rebel.py)."""

    eta: float = 1.0  # REBEL step size: the exact minimiser is pi_t * exp(eta * r)

    def validate(self) -> None:
        check_positive(self, ["eta"])


@dataclass
class PpoOptions:
    """Token-level PPO with a value model (algorithms/ppo.py); DDPO reads its clip_range too."""

    clip_range: float = 0.2  # ppo, ddpo: ratio clipping epsilon
    clip_range_value: float = 0.2  # ppo: value clipping around the old values
    vf_coef: float = 0.1  # ppo: weight of the value loss
    gamma: float = 1.0  # ppo: discount over completion tokens
    lam: float = 0.95  # ppo: GAE lambda
    value_model: str | None = None  # ppo: value-model init; default: the reward model if one is named, else the policy

    def validate(self) -> None:
        check_positive(self, ["clip_range", "clip_range_value"])
        check_non_negative(self, ["vf_coef"])
        check_unit_interval(self, ["gamma", "lam"])


@dataclass
class ReinforceOptions:
    """REINFORCE with a moving-average baseline (algorithms/reinforce.py)."""

    baseline_decay: float = 0.9  # reinforce: moving-average baseline b <- decay * b + (1 - decay) * mean reward

    def validate(self) -> None:
        check_unit_interval(self, ["baseline_decay"])


@dataclass
class IterativeDpoOptions:
    """Online DPO on each prompt's best and worst sample (algorithms/dpo.py)."""

    beta: float = 0.1  # iterative_dpo: DPO temperature (against pi_t, on the best and worst sample)

    def validate(self) -> None:
        check_positive(self, ["beta"])


@dataclass
class DdpoOptions:
    """DDPO for diffusion policies (algorithms/ddpo.py); its ratio clipping is ppo's clip_range."""

    ddpo_buffer_size: int = 16  # ddpo: rewards kept per prompt for its mean and std (DDPO's per-prompt stat tracking)
    ddpo_min_count: int = 16  # ddpo: a prompt with fewer kept rewards is normalised by the batch mean and std
    ddpo_adv_clip: float = 5.0  # ddpo: advantages are clipped to [-ddpo_adv_clip, ddpo_adv_clip]

    def validate(self) -> None:
        check_at_least_one(self, ["ddpo_buffer_size", "ddpo_min_count"])
        check_positive(self, ["ddpo_adv_clip"])


@dataclass
class GrpoOptions:
    """GRPO (algorithms/grpo.py): group-relative advantages, a clipped ratio, no value model."""

    epsilon: float = 0.2  # grpo: ratio clipping epsilon
    scale_rewards: bool = True  # grpo: divide each group's centred rewards by the group's std

    def validate(self) -> None:
        check_positive(self, ["epsilon"])


@dataclass
class ApoOptions:
    """A*-PO (algorithms/apo.py): regress beta2 * log(pi/pi_ref) onto r - V*, V* from pi_ref."""

    beta1: float = 0.5  # apo: V*'s temperature: V* = beta1 * log mean exp(r / beta1)
    beta2: float = 1e-3  # apo: weight of log(pi/pi_ref), the implicit KL (use kl_coef 0)
    vstar_samples: int = 8  # apo: pi_ref samples per prompt for V* (once per prompt)

    def validate(self) -> None:
        check_positive(self, ["beta1", "beta2"])
        check_at_least_one(self, ["vstar_samples"])


for spec in [
    AlgorithmSpec("rebel", f"{OBJECTIVES}:Rebel", RebelOptions, min_generations=2, policy_kinds=BOTH_KINDS,
                  pair_sources=("online", "hybrid", "offline"), preferences=True, pairings=("all", "best_worst")),
    AlgorithmSpec("ppo", f"{OBJECTIVES}:Ppo", PpoOptions, sharding=False,
                  other_kind_hint="algorithm ppo is token-level PPO with a value model for causal LMs: for a "
                                  "diffusion policy use ddpo (DDPO-style PPO, no value model)",
                  reward_normalization="reward_normalization {value!r} does not apply to ppo (it whitens its "
                                       "advantages): use none"),
    AlgorithmSpec("rloo", f"{OBJECTIVES}:Rloo", min_generations=2, policy_kinds=BOTH_KINDS),
    AlgorithmSpec("reinforce", f"{OBJECTIVES}:Reinforce", ReinforceOptions, policy_kinds=BOTH_KINDS),
    AlgorithmSpec("iterative_dpo", f"{OBJECTIVES}:IterativeDpo", IterativeDpoOptions, min_generations=2,
                  policy_kinds=BOTH_KINDS),
    AlgorithmSpec("ddpo", f"{OBJECTIVES}:Ddpo", DdpoOptions, policy_kinds=("diffusion",),
                  other_kind_hint="algorithm ddpo is PPO for diffusion policies: for a causal LM use ppo",
                  reward_normalization="ddpo normalises rewards per prompt itself: use reward_normalization none"),
    AlgorithmSpec("grpo", f"{OBJECTIVES}:Grpo", GrpoOptions, min_generations=2, policy_kinds=BOTH_KINDS,
                  reward_normalization="grpo normalises rewards per prompt itself: use reward_normalization none"),
    AlgorithmSpec("apo", f"{OBJECTIVES}:Apo", ApoOptions,
                  reward_normalization="apo regresses the raw score onto V*: use "
                                       "reward_normalization none"),
]:
    register_algorithm(spec)
