"""An iteration's metrics, gathered over processes, with TRL's names where TRL has one (`reward`,
`reward_std`, `kl`, `completions/mean_length`), and the wall-clock time of each phase.
"""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

import torch

from ...evaluation.verifiable import identical_score_fraction


class PhaseTimer:
    """Wall-clock seconds per named phase of an iteration."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def iteration_metrics(accelerator: Any, rollout: Any, n: int, score: torch.Tensor, named: dict,
                      kl: torch.Tensor, reward: torch.Tensor, losses: list[float],
                      grad_norms: list[float], seconds: dict[str, float], learning_rate: float,
                      **counters: Any) -> dict[str, Any]:
    """The iteration's rewards, KL, loss, gradient norm and lengths over every process's rows
    (n consecutive per prompt), after `counters` (iteration, reward_queries), with the learning
    rate and the phase times."""
    gather = accelerator.gather
    score_all, kl_all = gather(score.float()), gather(kl.float())
    reward_all = gather(reward.float())
    lengths = gather(rollout.lengths.float())
    no_eos = gather((~rollout.has_eos).float())
    return {
        **counters,
        "reward": score_all.mean().item(),
        "reward_std": score_all.std().item(),
        # prompts whose n samples all scored the same: for REBEL their pairs carry no signal
        "identical_score_fraction": identical_score_fraction(score_all, n),
        # nanmean: a reward that returned None (not applicable) is averaged over those it scored
        **{f"rewards/{name}": gather(v.to(score.device).float()).nanmean().item()
           for name, v in named.items()},
        "kl": kl_all.mean().item(),
        "rlhf_reward": reward_all.mean().item(),
        "loss": sum(losses) / len(losses),
        "grad_norm": sum(grad_norms) / max(1, len(grad_norms)),
        "learning_rate": learning_rate,
        "completions/mean_length": lengths.mean().item(),
        "completions/min_length": lengths.min().item(),
        "completions/max_length": lengths.max().item(),
        "completions/no_eos_fraction": no_eos.mean().item(),
        **{f"time/{phase}": s for phase, s in seconds.items()},
        "tokens_per_second": rollout.lengths.sum().item() / max(seconds["sampling"], 1e-9),
    }


def sampling_metrics(accelerator: Any, policy: Any) -> dict[str, float]:
    """The policy's sampling diagnostics (vllm/logprob_diff), averaged over processes: each has
    its own sampler (a vLLM engine per process), and one left behind must show in the log."""
    device = accelerator.device
    return {name: accelerator.gather(torch.tensor([value], device=device)).mean().item()
            for name, value in policy.sampling_metrics().items()}


def episode_metrics(accelerator: Any, rollout: Any,
                    environment_factory: Callable | None) -> dict[str, float]:
    """environment/return and environment/turns (means over all processes) of multi-turn
    episodes, and the environment's time-out and failure counts where its factory keeps them."""
    if getattr(rollout, "episode_rewards", None) is None:
        return {}
    device, gather = accelerator.device, accelerator.gather
    take_counts = getattr(environment_factory, "take_counts", None)
    return {"environment/return": gather(rollout.episode_rewards.to(device)).mean().item(),
            "environment/turns": gather(rollout.turns.to(device).float()).mean().item(),
            **(take_counts() if take_counts is not None else {})}
