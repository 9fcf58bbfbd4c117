"""Held-out evaluation during a run: pi_ref before training (once; a resumed run reads the saved
result), the policy every `eval_every` iterations (eval/* learning-curve metrics), and after
training, where a periodic evaluation at the last iteration already is the final one.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from accelerate.utils import gather_object

from ...config.run import EvalConfig
from ...config.run import EnvironmentConfig
from ...evaluation.heldout import Episodes, EvalResult, Shard, evaluate
from ...policies.base import Policy
from ..run.outputs import write_json

BEFORE_FILE = "eval_before.json"


class HeldOut:
    """The run's held-out prompts and how they are scored (the `evaluation` group, the training
    rewards plus the evaluation-only ones); processes split the batches between them."""

    def __init__(self, prompts: Any, held_out: bool, evaluation: EvalConfig, num_generations: int,
                 seed: int, policy: Policy, rewards: Any, eval_rewards: Any,
                 accelerator: Any, episodes: Episodes | None = None) -> None:
        self.episodes = episodes  # None: single-turn samples
        self.prompts, self.held_out, self.evaluation = prompts, held_out, evaluation
        self.num_generations, self.seed = num_generations, seed
        self.policy, self.rewards, self.eval_rewards = policy, rewards, eval_rewards
        self.accelerator = accelerator
        self.latest: tuple[int, EvalResult] | None = None  # (iteration, result) of the last one

    def evaluate(self, reference: bool) -> EvalResult:
        """Score pi_ref (`reference`) or the policy on the held-out prompts, with the run's seed."""
        evaluation = self.evaluation
        return evaluate(self.policy, self.prompts, self.rewards, eval_reward_set=self.eval_rewards,
                        num_generations=evaluation.eval_generations or self.num_generations,
                        temperature=evaluation.eval_temperature,
                        batch_size=evaluation.eval_batch_size, reference=reference, seed=self.seed,
                        shard=self._shard(), episodes=self.episodes)

    def _shard(self) -> Shard | None:
        """Processes split the held-out batches between them (all get the whole result)."""
        accelerator = self.accelerator
        if accelerator.num_processes == 1:
            return None
        return Shard(accelerator.process_index, accelerator.num_processes, gather_object)

    def due(self, iteration: int) -> bool:
        """Whether a periodic evaluation follows this iteration."""
        every = self.evaluation.eval_every
        return bool(every) and iteration % every == 0

    def label(self) -> str:
        """What the prompts are, for the before/after table."""
        if self.held_out:
            return f"{len(self.prompts)} held-out prompts"
        return (f"{len(self.prompts)} prompts of the training file "
                "(pass eval_dataset for a held-out set)")


def episodes(factory: Callable[[], Any] | None, environment: EnvironmentConfig
             ) -> Episodes | None:
    """How held-out prompts are played when the run has an environment `factory` (one fresh
    environment per episode, the run's turn and token limits); None for a single-turn run."""
    if factory is None:
        return None
    return Episodes(factory, environment.max_turns, environment.max_total_tokens)


def before(run_dir: Path, run: Callable[[bool], EvalResult], is_main: bool) -> EvalResult:
    """pi_ref's result: the one saved in `run_dir` by an earlier start of this run, else
    `run(True)`, saved by the main process."""
    saved = run_dir / BEFORE_FILE
    if saved.is_file():
        return EvalResult(**json.loads(saved.read_text()))
    result = run(True)
    if is_main:
        write_json(saved, result.to_dict())
    return result


def periodic_metrics(iteration: int, reward_queries: int, result: EvalResult) -> dict[str, Any]:
    """Held-out metrics for learning curves, against the number of reward queries so far."""
    return {"iteration": iteration, "reward_queries": reward_queries, "eval/reward": result.reward,
            "eval/kl": result.kl,
            **{f"eval/{name}": value for name, value in result.rewards.items()},
            **{f"eval/{name}": value for name, value in [
                ("return", result.episode_return), ("success_rate", result.success_rate),
                ("turns", result.mean_turns)] if value is not None},
            **{f"eval/{name}/{metric}": value for name, metrics in result.verified.items()
               for metric, value in metrics.items()}}
