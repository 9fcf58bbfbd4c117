"""The online loop: sample, score, update, log, evaluate, checkpoint. One iteration (`step`), for a
batch of prompts x:

1. sample n completions per prompt from pi_t (seeded per iteration, so every algorithm sees the same
   first rollouts for one seed), or take some or all of them from the dataset, or play multi-turn
   episodes (pairs.py); with `async_rollouts: 1` the batch was drawn by the previous iteration's
   weights, before its update (rollouts.py);
2. compute log pi_t (held fixed for the whole iteration) and log pi_ref, once, right after sampling
   (with one epoch in one minibatch, log pi_t is the update's own forward, made before the weights
   change);
3. score: reward = score - missing_eos_penalty * [no EOS] - kl_coef * (log pi_t - log pi_ref);
4. update: `num_epochs` passes over minibatches of prompts, each minimising the algorithm's loss
   (update.py, with microbatch.py under a token budget);
5. log the iteration's metrics; every `eval_every` iterations score the held-out prompts
   (evaluation.py); every `save_every` write a resumable checkpoint (training/run/checkpoint.py).

Before the first iteration, setup.py builds each piece from its own config group (prompts, policy,
rewards, optimizer; the state of a resumed checkpoint); after the last, the run's outputs are
written (training/run/finish.py). Algorithms (REBEL, PPO, RLOO, REINFORCE, iterative DPO, DDPO,
GRPO, ...) differ only in their `Objective` (training/online/methods/NAME.py); the loop has no
algorithm-specific branch and talks to the policy only through the contract of policies/base.py.
Runs on accelerate from the start (one process by default; `accelerate launch` for more).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ...config import RebelConfig, algorithm_spec
from ...errors import RunDirError
from ...evaluation.heldout import EvalResult
from ...policies.causal_lm.policy import resolve_mixed_precision
from ...sharding import check_sharding, gathered_model_state, gathered_optimizer_state
from ...sharding import make_accelerator as _make_accelerator  # tests/fsdp_on_cpu.py replaces it
from ..allocator import apply_memory_options
from ..run import checkpoint as ckpt
from ..run.finish import write_evaluation, write_final_outputs
from ..run.inputs import write_inputs
from ..run.outputs import CONFIG_FILE, MetricsLogger, prepare_run_dir, truncate_logs
from . import evaluation as held_out
from . import setup
from .methods import Batch, BuildContext, build_objective
from .metrics import PhaseTimer, episode_metrics, iteration_metrics, sampling_metrics
from .pairs import collect_rollout, environment_factory, normalize_rewards, start_rollout
from .progress import TrainingProgress
from .rollouts import Prefetcher, check_async, logprob_gap
from .setup import sharding_needs  # noqa: F401  (public here: tests and cli import it from loop)
from .update import Update


class RebelTrainer:
    """Runs REBEL (or the baseline `training.algorithm` names) on a causal LM or a diffusion model
    (the policy factory, policies/factory.py, picks it from config): `RebelTrainer(config).train()`.

    Objects in memory win over the config's path for their part: `model` (a causal LM
    `PreTrainedModel`; a `PeftModel` keeps its adapter, which trains, with the adapter disabled as
    pi_ref), `tokenizer` (e.g. one with a custom chat template), `train_dataset`/`eval_dataset` (a
    `datasets.Dataset`, or a `DatasetDict` whose `dataset_split`/`eval_split` are used),
    `reward_model` (a `(model, tokenizer)` pair of a one-label sequence classifier, added to the
    rewards); the run folder's inputs.json describes them. `reward_funcs` optionally adds Python
    callables with TRL's signature to the rewards named in config; `preference_func`
    (`f(prompts, completions_a, completions_b, **columns) -> list[float]` in [0, 1]) takes the
    place of `reward.preference` (REBEL's general-preference variant). `environment` (a class or a
    zero-argument callable returning one fresh environment per episode, policies/episodes.py)
    makes every sample a multi-turn episode, scored by its return plus the rewards. Every config,
    data, reward-spec and run-directory problem is raised before any model is loaded (prompt
    lengths are checked right after the tokenizer loads, before any training).
    """

    def __init__(self, config: RebelConfig, *, model=None, tokenizer=None, train_dataset=None,
                 eval_dataset=None, reward_funcs: list | None = None, reward_model=None,
                 preference_func=None, environment=None, resume: bool = False,
                 new_lr_schedule: bool = False) -> None:
        given = {"model": model, "tokenizer": tokenizer, "train_dataset": train_dataset,
                 "eval_dataset": eval_dataset, "reward_funcs": reward_funcs,
                 "reward_model": reward_model, "preference_func": preference_func,
                 "environment": environment}
        # An environment's return is a score of its own: rewards become optional.
        episodes = environment is not None or config.environment.environment is not None
        rewards_given = reward_funcs or preference_func or episodes or reward_model is not None
        self.config = config = config.validate(require_rewards=not rewards_given)
        self.environment_factory = environment_factory(config, environment)  # None: single-turn
        self.run_dir = Path(config.output.output_dir)
        self.spec = algorithm_spec(config.training.algorithm)
        kind = setup.check_inputs(config, self.spec, model is not None, preference_func)
        self.train_prompts = setup.load_train_prompts(config.data, train_dataset)
        self.eval_prompts, eval_held_out = setup.load_eval_prompts(
            config.data, config.evaluation, train_dataset, eval_dataset)
        self.resume_from = ckpt.checkpoint_to_resume(self.run_dir) if resume else None  # None: anew

        self.accelerator = _make_accelerator(resolve_mixed_precision(config.model.mixed_precision))
        self.is_main = self.accelerator.is_main_process
        apply_memory_options(config.training, self.accelerator.device.type)
        check_async(config.training.async_rollouts, episodes=self.environment_factory is not None,
                    backend=config.sampling.generation_backend, images=kind.supports.images,
                    processes=self.accelerator.num_processes,
                    algorithm=self.spec.name, options=getattr(config, self.spec.name, None))
        check_sharding(self.accelerator, sharding_needs(config, kind.supports))  # before any write
        if self.is_main:
            if self.resume_from is None:  # resuming a folder with no run yet starts over (noted)
                prepare_run_dir(self.run_dir, config.output.overwrite or resume)
            config.save_yaml(self.run_dir / CONFIG_FILE)  # on resume: records new overrides
            write_inputs(self.run_dir, given)
        prompt_sets = [self.train_prompts, self.eval_prompts]
        self.policy = setup.load_run_policy(config, self.accelerator, prompt_sets, model, tokenizer)
        self.rewards, self.eval_rewards, self.trainer_state = setup.build_rewards(
            config.reward, config.evaluation, config.training.num_iterations,
            str(self.accelerator.device), reward_funcs, reward_model)
        if self.resume_from is not None:  # whole weights, before accelerate wraps or shards them
            self.policy.load_weights(self.resume_from)
        self.objective = build_objective(self.spec, getattr(config, self.spec.name, None),
                                         BuildContext(config, self.policy, self.accelerator.device,
                                                      preference_func=preference_func,
                                                      score=lambda *rows: self._score(*rows)[0]))
        self._build_optimizer()
        self.held_out = (None if self.eval_prompts is None else held_out.HeldOut(
            self.eval_prompts, eval_held_out, config.evaluation, config.sampling.num_generations,
            config.training.seed, self.policy, self.rewards, self.eval_rewards, self.accelerator,
            held_out.episodes(self.environment_factory, config.environment)))
        self.iteration = 0
        self.reward_queries = 0
        # With async rollouts, batch t+1 is drawn before update t (rollouts.py); else none ahead.
        self.rollouts = Prefetcher(self._draw, self._start_draw, self.policy,
                                   self.accelerator.device)
        if self.resume_from is not None:
            self.iteration, self.reward_queries = setup.restore(
                self.resume_from, self.policy, self.objective, self.optimization, new_lr_schedule,
                self.rollouts)
            if self.is_main:  # log lines after the checkpoint are dropped
                truncate_logs(self.run_dir, self.iteration)
        self.logger = MetricsLogger(self.run_dir, config.output, enabled=self.is_main,
                                    run_config=config.to_dict(), images=self.policy.supports.images)

    def _build_optimizer(self) -> None:
        """The optimizer, schedule and update (setup.py, update.py); fsdp_on_cpu.py wraps it."""
        config = self.config
        self.optimization = setup.build_optimizer(config.training,
                                                  config.sampling.prompts_per_iteration,
                                                  self.policy, self.objective, self.accelerator)
        self.optimizer = self.optimization.optimizer
        self.scheduler = self.optimization.scheduler
        self.trainable_params = self.optimization.trainable_params
        self.updater = Update(config.training, config.sampling.num_generations,
                              config.sampling.prompts_per_iteration, self.policy, self.objective,
                              self.accelerator, self.optimization)
        # step() reuses the update's forward as log pi_t where this holds (a test may turn it off)
        self.update_forward_gives_old_logps = self.updater.forward_gives_old_logps

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Run the remaining iterations, evaluating on held-out prompts before and after; write the
        run's outputs and return its summary."""
        before = None if self.held_out is None else held_out.before(self.run_dir, self._evaluate,
                                                                    self.is_main)
        output, iterations = self.config.output, self.config.training.num_iterations
        progress = TrainingProgress(iterations, self.iteration,
                                    enabled=output.progress and self.is_main)
        with progress:
            while self.iteration < iterations:
                metrics, samples = self.step()
                self.logger.log(metrics, samples)
                progress.update(metrics)
                if self.held_out is not None and self.held_out.due(self.iteration):
                    result = self._evaluate(reference=False)
                    self.held_out.latest = (self.iteration, result)
                    self.logger.log(held_out.periodic_metrics(self.iteration, self.reward_queries,
                                                              result), [])
                if output.save_every and self.iteration % output.save_every == 0 \
                        and self.iteration < iterations:
                    self.save_checkpoint()
        summary = self._finish(before, self.save_checkpoint())
        self.logger.close()
        return summary

    def step(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One iteration: sample, compute log-probs, score, update. Returns metrics and sample
        completions."""
        config, n = self.config, self.config.sampling.num_generations
        rows = self.train_prompts[self._prompt_indices(self.iteration)]
        prompts = [p for p in rows["prompt"] for _ in range(n)]
        columns = {k: [v for v in values for _ in range(n)]
                   for k, values in rows.items() if k != "prompt"}

        timer = PhaseTimer()
        with timer("sampling"):
            drawn = self.rollouts.take(self.iteration)
            rollout = drawn.rollout
        # One epoch in one minibatch: the update's forward, made before the weights change, is log
        # pi_t exactly; the separate pass that would recompute it is skipped (unless sampling
        # recorded it).
        reuse_forward = (self.update_forward_gives_old_logps
                         and rollout.recorded_token_log_probs is None)
        with timer("logprobs"):
            ref_token_logps, old_token_logps = self.updater.fixed_token_log_probs(rollout,
                                                                                  reuse_forward)
        with timer("scoring"):
            self.trainer_state.global_step = self.iteration
            score, named = self._score(prompts, rollout, columns)
            score = score.to(ref_token_logps.device)
        ahead = self.iteration + 1
        if config.training.async_rollouts and ahead < config.training.num_iterations:
            with timer("sampling_ahead"):  # from the weights before this update: one step stale
                self.rollouts.prefetch(ahead)
        with timer("update"):
            current_token_logps = self.policy.token_log_probs(rollout) if reuse_forward else None
            if reuse_forward:
                old_token_logps = self.policy.sampling_token_log_probs(
                    rollout, current_token_logps.detach())
            old_logps = old_token_logps.sum(-1)
            kl = old_logps - ref_token_logps.sum(-1)
            shaped = score - config.reward.kl_coef * kl
            batch = Batch(rollout, old_logps, score, kl,
                          normalize_rewards(shaped, n, config.reward.reward_normalization),
                          prompts=prompts, columns=columns, current_token_logps=current_token_logps)
            if drawn.sampler_logps is not None:  # drawn one update ahead: importance weights
                batch.extra["sampler_logps"] = drawn.sampler_logps.to(old_logps.device)
            if self.objective.token_level:
                batch.extra.update(old_token_logps=old_token_logps,
                                   token_kl=old_token_logps - ref_token_logps)
            objective_stats = self.objective.prepare(batch, self.policy)
            losses, grad_norms, loss_stats = self.update(batch)
        if config.training.async_rollouts:
            with timer("sampling_ahead"):  # a draw overlapping the update ends before any push
                self.rollouts.join()

        self.iteration += 1
        accelerator = self.accelerator
        queries = self.objective.reward_queries(len(rollout))
        self.reward_queries += queries * accelerator.num_processes
        metrics = {**iteration_metrics(accelerator, rollout, n, score, named, kl, shaped, losses,
                                       grad_norms, timer.seconds, self.scheduler.get_last_lr()[0],
                                       iteration=self.iteration,
                                       reward_queries=self.reward_queries),
                   **objective_stats, **loss_stats, **sampling_metrics(accelerator, self.policy),
                   **self.rewards.take_counts(),  # rewards/NAME/timeouts, /failures (this process)
                   **episode_metrics(accelerator, rollout, self.environment_factory)}
        if config.training.async_rollouts:
            metrics["async/staleness"] = self.iteration - 1 - drawn.version
            metrics.update(logprob_gap(drawn, old_logps))
        samples = [{"prompt": prompts[i], "completion": rollout.completions[i],
                    "reward": float(score[i])}
                   for i in range(min(config.output.log_completions, len(rollout)))]
        return metrics, samples

    def _draw(self, iteration: int):
        """Sample the rollout of `iteration` from the current weights, seeded by (seed, iteration,
        process): algorithms share rollouts while policies agree."""
        config, rows = self.config, self._seeded_rows(iteration)
        return collect_rollout(self.policy, rows, config.sampling.num_generations, config.data,
                               self.environment_factory, config.environment, self.spec.rollout)

    def _start_draw(self, iteration: int):
        """`_draw` started (async rollouts, single-turn): a handle whose `result()` is the rollout.
        """
        config, rows = self.config, self._seeded_rows(iteration)
        return start_rollout(self.policy, rows, config.sampling.num_generations, config.data)

    def _seeded_rows(self, iteration: int) -> dict:
        """The prompts of `iteration`, with torch's RNG seeded by (seed, iteration, process)."""
        config, process = self.config, self.accelerator.process_index
        rows = self.train_prompts[self._prompt_indices(iteration)]
        torch.manual_seed((config.training.seed * 1_000_003 + iteration) * 1_009 + process)
        return rows

    def update(self, batch: Batch) -> tuple[list[float], list[float], dict[str, float]]:
        """The iteration's update (update.py): losses, gradient norms and mean loss metrics."""
        return self.updater(batch)

    def _microbatched(self, minibatch: Batch, accumulate: int, sync: bool
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """One minibatch's backward in micro-batches, exactly the one-pass gradient (update.py)."""
        return self.updater.microbatched(minibatch, accumulate, sync)

    def _score(self, prompts: list, rollout, columns: dict[str, list]) -> tuple[torch.Tensor, dict]:
        """The run's score of each row (the rewards minus the missing-EOS penalty, before any KL
        term) and the named rewards; objectives get it too (A*-PO scores pi_ref samples for V*)."""
        ids = rollout.completion_token_ids()
        score, named = self.rewards(prompts, rollout.completions, columns,
                                    {} if ids is None else {"completion_ids": ids})
        no_eos = (~rollout.has_eos).float()
        episode_return = getattr(rollout, "episode_rewards", None)
        if episode_return is not None:  # an episode: its return plus the rewards of its transcript
            score = score.to(no_eos.device) + episode_return.to(no_eos.device)
        return score.to(no_eos.device) - self.config.reward.missing_eos_penalty * no_eos, named

    def _evaluate(self, reference: bool) -> EvalResult:
        """Score pi_ref (`reference`) or the policy on the held-out prompts (evaluation.py)."""
        return self.held_out.evaluate(reference)

    # ------------------------------------------------------------------ helpers
    def _prompt_indices(self, iteration: int) -> list[int]:
        """Prompts for an iteration: a seeded reshuffle per pass over the data, so resuming repeats
        nothing."""
        size = len(self.train_prompts)
        per_iteration = self.config.sampling.prompts_per_iteration
        seed = self.config.training.seed
        accelerator = self.accelerator
        start = (iteration * accelerator.num_processes + accelerator.process_index) * per_iteration
        indices = []
        for position in range(start, start + per_iteration):
            data_pass = position // size
            generator = torch.Generator().manual_seed(seed * 100_003 + data_pass)
            order = torch.randperm(size, generator=generator)
            indices.append(int(order[position % size]))
        return indices

    def save_checkpoint(self) -> dict | None:
        """Write a checkpoint; return the gathered model state (None unless sharded) for reuse.
        Collectives under FSDP2: every process gathers, the main one writes."""
        model_state = gathered_model_state(self.policy.model)
        optimizer_state = gathered_optimizer_state(self.policy.model, self.optimizer)
        if self.is_main:
            counters = {"reward_queries": self.reward_queries,
                        "objective": self.objective.state_dict(),
                        "async_rollout": self.rollouts.state_dict()}
            ckpt.save_checkpoint(self.run_dir / "checkpoints", self.iteration, self.policy,
                                 optimizer_state, self.scheduler, counters, model_state=model_state)
        self.accelerator.wait_for_everyone()
        return model_state

    def _finish(self, before: EvalResult | None, model_state: dict | None) -> dict[str, Any]:
        """The held-out evaluation after training, then the run's outputs (training/run/finish.py).
        `model_state`: the weights gathered for the last checkpoint (None unless sharded)."""
        config = self.config
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "iterations": self.iteration,
                                   "reward_queries": self.reward_queries}
        if before is not None:
            latest = self.held_out.latest
            # Same policy, prompts and seed: a periodic eval at this iteration is the final one.
            reuse = latest is not None and latest[0] == self.iteration
            after = latest[1] if reuse else self._evaluate(reference=False)
            summary.update(before=before.to_dict(), after=after.to_dict())
            if self.is_main:
                write_evaluation(self.run_dir, before, after, self.held_out.label(),
                                 show=config.output.progress)
        if self.is_main:
            prompts = (self.eval_prompts or self.train_prompts)["prompt"]
            summary.update(write_final_outputs(self.run_dir, self.policy, config.model,
                                               config.output, config.training.seed, prompts,
                                               model_state))
        self.accelerator.wait_for_everyone()
        return summary


def train(config: RebelConfig, **objects: Any) -> dict[str, Any]:
    """Train with REBEL as `config` says; return a summary (run dir, held-out before/after).
    Keyword arguments (`model`, `tokenizer`, `train_dataset`, `eval_dataset`, `reward_funcs`,
    `reward_model`, `preference_func`, `environment`) are objects in memory, as for
    `RebelTrainer`."""
    return RebelTrainer(config, **objects).train()


_OBJECTS = ("model", "tokenizer", "train_dataset", "eval_dataset", "reward_funcs", "reward_model",
            "preference_func", "environment")


def resume(run_dir: str | Path, *, new_lr_schedule: bool = False,
           **objects_and_overrides: Any) -> dict[str, Any]:
    """Continue the run in `run_dir` from its latest checkpoint that loads (optionally with more
    iterations).

    Options that change the learning-rate schedule (a larger num_iterations re-stretches a decayed
    one) are refused unless `new_lr_schedule`, which continues on the new options' schedule. A
    folder with no checkpoint and no completed iteration starts from the beginning. A run started
    with Python objects (`reward_funcs`, `preference_func`, `model`, `train_dataset`, ...) needs the
    same objects again, as keyword arguments: they are not in config.yaml. Other keyword arguments
    override config fields.
    """
    objects = {k: objects_and_overrides.pop(k) for k in _OBJECTS if k in objects_and_overrides}
    overrides = objects_and_overrides
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"nothing to resume in {run_dir}: it has no {CONFIG_FILE}")
    config = RebelConfig.from_yaml(run_dir / CONFIG_FILE).with_overrides(
        {**overrides, "output_dir": str(run_dir)})
    with ckpt.config_restored_on_error(run_dir / CONFIG_FILE):  # a refused resume changes nothing
        trainer = RebelTrainer(config, **objects, resume=True, new_lr_schedule=new_lr_schedule)
    return trainer.train()
