"""The online loop: sample, score, update. One iteration, for a batch of prompts x:

1. sample n completions per prompt from pi_t (seeded per iteration, so every algorithm sees the same
   first rollouts for one seed), or take some or all of them from the dataset (training/online/pairs.py);
2. compute log pi_t (held fixed for the whole iteration) and log pi_ref, once, right after sampling (with
   one epoch in one minibatch, log pi_t is the update's own forward, made before the weights change);
3. reward = score - missing_eos_penalty * [no EOS] - kl_coef * (log pi_t - log pi_ref);
4. `num_epochs` passes over minibatches of prompts, each minimising the algorithm's loss.

Algorithms (REBEL, PPO, RLOO, REINFORCE, iterative DPO, DDPO, GRPO) differ only in their `Objective`
(training/online/methods/NAME.py): how the batch becomes a loss, registered once in that module,
and its entry builds the objective; the loop has no algorithm-specific branch, and talks to the policy
only through the contract of policies/base.py.

Runs on accelerate from the start (one process by default; `accelerate launch` for more).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object, set_seed
from transformers import TrainerState, get_scheduler

from ...config import RebelConfig, algorithm_spec
from ...data import load_prompt_dataset
from ...errors import RunDirError
from ...evaluation.heldout import EvalResult, Shard, evaluate
from ...evaluation.verifiable import identical_score_fraction
from ...evaluation.report import (
    before_after_markdown,
    plot_reward_kl,
    print_before_after,
)
from ...policies.base import PolicySupports
from ...policies.causal_lm.policy import resolve_mixed_precision
from ...policies.factory import PolicyKind, check_policy_source, load_policy
from ...rewards import RewardSet, check_reward_spec
from ...rewards.preferences import NoRewards, check_preference_spec
from ...rewards.reward_model import RewardModel
from ...sharding import (
    check_sharding,
    gathered_model_state,
    gathered_optimizer_state,
    load_optimizer_state,
)
from ...sharding import (
    make_accelerator as _make_accelerator,  # a name tests/fsdp_on_cpu.py replaces
)
from ..run import checkpoint as ckpt
from ..run.inputs import write_inputs
from ..run.outputs import (
    CONFIG_FILE,
    MetricsLogger,
    prepare_run_dir,
    read_metrics,
    truncate_logs,
    write_json,
)
from .methods import Batch, BuildContext, build_objective
from .microbatch import microbatch_rows, narrowed
from .pairs import check_completion_columns, collect_rollout, environment_factory, normalize_rewards
from .progress import TrainingProgress


class RebelTrainer:
    """Runs REBEL (or the baseline `config.algorithm` names) on a causal LM or a diffusion model (the policy
    factory, policies/factory.py, picks it from config): `RebelTrainer(config).train()`.

    Objects in memory win over the config's path for their part: `model` (a causal LM `PreTrainedModel`;
    a `PeftModel` keeps its adapter, which trains, with the adapter disabled as pi_ref), `tokenizer` (e.g.
    one with a custom chat template), `train_dataset`/`eval_dataset` (a `datasets.Dataset`, or a
    `DatasetDict` whose `dataset_split`/`eval_split` are used), `reward_model` (a `(model, tokenizer)` pair
    of a one-label sequence classifier, added to the rewards); the run folder's inputs.json describes them.
    `reward_funcs` optionally adds Python callables with TRL's signature to the rewards named in config;
    `preference_func` (`f(prompts, completions_a, completions_b, **columns) -> list[float]` in [0, 1])
    takes the place of `config.preference` (REBEL's general-preference variant).
    `environment` (a class or a zero-argument callable returning one fresh environment per
    episode, policies/episodes.py) makes every sample a multi-turn episode, scored by its return
    plus the rewards.
    Every config, data, reward-spec and run-directory problem is raised before any model is loaded
    (prompt lengths are checked right after the tokenizer loads, before any training).
    """

    def __init__(self, config: RebelConfig, *, model=None, tokenizer=None, train_dataset=None, eval_dataset=None,
                 reward_funcs: list | None = None, reward_model=None, preference_func=None,
                 environment=None, resume: bool = False, new_lr_schedule: bool = False) -> None:
        given = {"model": model, "tokenizer": tokenizer, "train_dataset": train_dataset, "eval_dataset": eval_dataset,
                 "reward_funcs": reward_funcs, "reward_model": reward_model,
                 "preference_func": preference_func, "environment": environment}
        # An environment's return is a score of its own: rewards become optional.
        episodes = environment is not None or config.environment.environment is not None
        rewards_given = reward_funcs or preference_func or episodes or reward_model is not None
        self.config = config.validate(require_rewards=not rewards_given)
        self.environment_factory = environment_factory(config, environment)  # None: single-turn
        self.run_dir = Path(config.output_dir)
        self.spec = algorithm_spec(config.algorithm)
        kind = self._check_inputs(model is not None, preference_func)
        self._load_prompts(train_dataset, eval_dataset)
        self.resume_from = ckpt.checkpoint_to_resume(self.run_dir) if resume else None  # None: start anew

        self.accelerator = _make_accelerator(resolve_mixed_precision(config.mixed_precision))
        self.is_main = self.accelerator.is_main_process
        check_sharding(self.accelerator, sharding_needs(config, kind.supports))  # before anything is written
        if self.is_main:
            if self.resume_from is None:  # resuming a folder that holds no run yet: it starts over (noted)
                prepare_run_dir(self.run_dir, config.overwrite or resume)
            config.save_yaml(self.run_dir / CONFIG_FILE)  # on resume: records new overrides (num_iterations)
            write_inputs(self.run_dir, given)
        self._load_policy(model, tokenizer)
        self._build_rewards(reward_funcs, reward_model)
        if self.resume_from is not None:  # whole weights, before accelerate wraps or shards the model
            self.policy.load_weights(self.resume_from)
        self.objective = build_objective(self.spec, getattr(config, self.spec.name, None), BuildContext(
            policy=self.policy, num_generations=config.num_generations, reward=config.reward,
            model_name_or_path=config.model_name_or_path, device=self.accelerator.device,
            options=lambda name: getattr(config, name), preference_func=preference_func,
            pairing=config.pairing, score=lambda *rows: self._score(*rows)[0]))
        self._build_optimizer()
        self.iteration = 0
        self.reward_queries = 0
        self._latest_eval: tuple[int, EvalResult] | None = None  # a periodic eval at the last iteration is final
        if self.resume_from is not None:
            self._restore(new_lr_schedule)
        self.logger = MetricsLogger(self.run_dir, config.output, enabled=self.is_main, run_config=config.to_dict(),
                                    images=self.policy.supports.images)

    # ------------------------------------------------------------------ setup
    def _check_inputs(self, model_object: bool, preference_func) -> PolicyKind:
        """Every cheap check before anything loads: the policy kind against the algorithm (and its default
        temperature, recorded in config.yaml), the reward specs, the preference spec."""
        config = self.config
        kind = check_policy_source(config.model, self.spec, config.data.pair_source, config.sampling,
                                   objects=model_object)
        if config.sampling.temperature is None:
            config.sampling.temperature = kind.supports.default_temperature
        for spec in [*config.rewards, *config.eval_rewards]:
            check_reward_spec(spec)
        if config.preference is not None and preference_func is None:
            check_preference_spec(config.preference)
        return kind

    def _load_prompts(self, train_dataset, eval_dataset) -> None:
        """Training and held-out prompts; an object passed in wins over the config's path (inputs.json
        records it)."""
        data = self.config.data
        train_source = data.dataset if train_dataset is None else train_dataset
        self.train_prompts = load_prompt_dataset(train_source, data.dataset_split, data.prompt_column)
        check_completion_columns(self.train_prompts, data)
        self.eval_prompts = self._load_eval_prompts(train_dataset, eval_dataset)

    def _load_policy(self, model, tokenizer) -> None:
        """The policy, with the same initial weights (LoRA's random A) on every process: DDP would broadcast
        rank 0's, but FSDP2 shards each process's own, so differing inits would stitch one matrix from
        several. Every prompt is tokenized once up front, so a too-long one stops the run here."""
        config = self.config
        set_seed(config.seed)
        self.policy = load_policy(config.model, config.sampling, self.accelerator.device, config.max_prompt_length,
                                  model_object=model, tokenizer=tokenizer)
        if self.accelerator.process_index:
            set_seed(config.seed + self.accelerator.process_index)
        self.policy.check_prompts(self.train_prompts["prompt"])
        if self.eval_prompts is not None:
            self.policy.check_prompts(self.eval_prompts["prompt"])

    def _build_rewards(self, reward_funcs, reward_model) -> None:
        """The training rewards (config specs, Python callables, a reward-model object) and the
        evaluation-only ones, all reading the same trainer state (TRL rewards take it as `trainer_state`)."""
        config, device = self.config, str(self.accelerator.device)
        extra = list(reward_funcs or [])
        if reward_model is not None:  # (model, tokenizer) of a sequence-classification reward model
            extra.append(RewardModel(tuple(reward_model) if isinstance(reward_model, (tuple, list)) else (reward_model, None),
                                     device=device))
        weights = None if config.reward_weights is None else list(config.reward_weights) + [1.0] * len(extra)
        specs = list(config.rewards) + extra
        guard = {"timeout": config.reward_timeout, "failure_score": config.reward_failure_score,
                 "workers": config.reward_workers,
                 "max_consecutive_failures": config.reward_max_consecutive_failures}
        self.rewards = RewardSet(specs, weights, device=device, **guard) if specs else NoRewards()
        self.eval_rewards = (RewardSet(config.eval_rewards, device=device, **guard)
                             if config.eval_rewards else None)
        self.trainer_state = TrainerState(max_steps=config.num_iterations)
        for reward_set in (self.rewards, self.eval_rewards):
            if reward_set is not None:
                reward_set.trainer_state = self.trainer_state

    def _restore(self, new_lr_schedule: bool) -> None:
        """Optimizer, schedule, RNG and counters of the checkpoint resumed from; later log lines dropped."""
        state = ckpt.load_trainer_state(self.resume_from, self.scheduler, new_schedule=new_lr_schedule)
        load_optimizer_state(self.policy.model, self.optimizer, state["optimizer"])
        self.iteration = state["iteration"]
        self.reward_queries = state["counters"]["reward_queries"]
        self.objective.load_state_dict(state["counters"].get("objective", {}))
        if self.is_main:
            truncate_logs(self.run_dir, self.iteration)

    def _load_eval_prompts(self, train_dataset=None, eval_dataset=None):
        config = self.config
        if config.eval_prompts == 0:
            return None
        separate = eval_dataset if eval_dataset is not None else config.eval_dataset
        source = next(s for s in (separate, train_dataset, config.dataset) if s is not None)
        # A single file (or Dataset object) has no splits: its "held-out" prompts are training prompts, and
        # reports say so; a DatasetDict object gives its eval_split.
        if separate is not None:
            self.eval_held_out = True
        elif train_dataset is not None:
            self.eval_held_out = isinstance(train_dataset, dict)
        else:
            self.eval_held_out = not Path(config.dataset).is_file()
        dataset = load_prompt_dataset(source, config.eval_split, config.prompt_column)
        return dataset.select(range(min(config.eval_prompts, len(dataset))))

    def _build_optimizer(self) -> None:
        config = self.config
        modules = self.objective.modules()
        params = [p for m in [self.policy.model, *modules] for p in m.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
        minibatches = config.prompts_per_iteration // config.minibatch_prompts
        total_steps = config.num_iterations * config.num_epochs * (minibatches // config.gradient_accumulation_steps)
        name = "constant_with_warmup" if config.lr_scheduler == "constant" else config.lr_scheduler
        self.scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(config.warmup_ratio * total_steps),
                                       num_training_steps=total_steps)
        # The scheduler stays outside accelerate: it steps once per real optimizer step, on every process.
        train_module, *prepared, self.optimizer = self.accelerator.prepare(self.policy.model, *modules, optimizer)
        self.policy.prepare_training(train_module, self.accelerator.autocast)
        self.objective.set_train_modules(prepared)
        # After prepare: FSDP2 replaces the parameters by sharded ones (and points the optimizer at them).
        self.trainable_params = [p for group in self.optimizer.param_groups for p in group["params"]]
        # The update is then a single forward over the whole batch before the weights change (see `step`).
        # Not with micro-batches: that forward's graph spans the whole batch (`_microbatched`).
        self.update_forward_gives_old_logps = (config.num_epochs == 1 and minibatches == 1
                                               and not config.max_tokens_per_microbatch)

    # ------------------------------------------------------------------ the loop
    def train(self) -> dict[str, Any]:
        """Run the remaining iterations, evaluating on held-out prompts before and after."""
        before = self._evaluate_before()
        self._train_loop()
        summary = self._finish(before, self.save_checkpoint())
        self.logger.close()
        return summary

    def _train_loop(self) -> None:
        config = self.config
        progress = TrainingProgress(config.num_iterations, self.iteration, enabled=config.progress and self.is_main)
        with progress:
            while self.iteration < config.num_iterations:
                metrics, samples = self.step()
                self.logger.log(metrics, samples)
                progress.update(metrics)
                if config.eval_every and self.iteration % config.eval_every == 0 and self.eval_prompts is not None:
                    self.logger.log(self._periodic_eval(), [])
                if config.save_every and self.iteration % config.save_every == 0 and self.iteration < config.num_iterations:
                    self.save_checkpoint()

    def step(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """One iteration: sample, compute log-probs, score, update. Returns metrics and sample completions."""
        config, n = self.config, self.config.num_generations
        rows = self.train_prompts[self._prompt_indices(self.iteration)]
        prompts = [p for p in rows["prompt"] for _ in range(n)]
        columns = {k: [v for v in values for _ in range(n)] for k, values in rows.items() if k != "prompt"}

        timer = _PhaseTimer()
        with timer("sampling"):
            # Seeded by (seed, iteration, process) alone: algorithms share rollouts as long as policies agree.
            torch.manual_seed(((config.seed * 1_000_003 + self.iteration) * 1_009 + self.accelerator.process_index))
            # pairs.py: online, hybrid or offline; multi-turn episodes with an environment
            rollout = collect_rollout(self.policy, rows, n, config.data, self.environment_factory,
                                      config.environment)
        # One epoch in one minibatch: the update's forward, made before the weights change, is log pi_t
        # exactly; the separate pass that would recompute it is skipped (unless sampling recorded it).
        reuse_forward = self.update_forward_gives_old_logps and rollout.recorded_token_log_probs is None
        with timer("logprobs"), torch.no_grad():
            ref_token_logps = self.policy.token_log_probs(rollout, reference=True)
            old_token_logps = None if reuse_forward else self.policy.sampling_token_log_probs(rollout)
        with timer("scoring"):
            self.trainer_state.global_step = self.iteration
            score, named = self._score(prompts, rollout, columns)
            score = score.to(ref_token_logps.device)
        with timer("update"):
            current_token_logps = self.policy.token_log_probs(rollout) if reuse_forward else None
            if reuse_forward:
                old_token_logps = self.policy.sampling_token_log_probs(rollout, current_token_logps.detach())
            old_logps = old_token_logps.sum(-1)
            kl = old_logps - ref_token_logps.sum(-1)
            shaped = score - config.kl_coef * kl
            batch = Batch(rollout, old_logps, score, kl, normalize_rewards(shaped, n, config.reward_normalization),
                          prompts=prompts, columns=columns, current_token_logps=current_token_logps)
            if self.objective.token_level:
                batch.extra.update(old_token_logps=old_token_logps, token_kl=old_token_logps - ref_token_logps)
            objective_stats = self.objective.prepare(batch, self.policy)
            losses, grad_norms, loss_stats = self.update(batch)

        self.iteration += 1
        self.reward_queries += self.objective.reward_queries(len(rollout)) * self.accelerator.num_processes
        metrics = self._metrics(rollout, score, named, kl, shaped, losses, grad_norms, timer.seconds)
        metrics.update(objective_stats)
        metrics.update(loss_stats)
        metrics.update(self._sampling_metrics())
        metrics.update(self.rewards.take_counts())  # rewards/NAME/timeouts, /failures (this process)
        metrics.update(self._episode_metrics(rollout))
        samples = [{"prompt": prompts[i], "completion": rollout.completions[i], "reward": float(score[i])}
                   for i in range(min(config.log_completions, len(rollout)))]
        return metrics, samples

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
        return score.to(no_eos.device) - self.config.missing_eos_penalty * no_eos, named

    def _episode_metrics(self, rollout) -> dict[str, float]:
        """environment/return and environment/turns (means over all processes) of multi-turn
        episodes, and the environment's time-out and failure counts where its factory keeps them."""
        if getattr(rollout, "episode_rewards", None) is None:
            return {}
        device = self.accelerator.device
        gather = self.accelerator.gather
        take_counts = getattr(self.environment_factory, "take_counts", None)
        return {"environment/return": gather(rollout.episode_rewards.to(device)).mean().item(),
                "environment/turns": gather(rollout.turns.to(device).float()).mean().item(),
                **(take_counts() if take_counts is not None else {})}

    def update(self, batch: Batch) -> tuple[list[float], list[float], dict[str, float]]:
        """`num_epochs` passes over minibatches of prompts (with their n samples), one loss each;
        with `max_tokens_per_microbatch`, a minibatch's backward runs in micro-batches
        (`_microbatched`)."""
        config, n = self.config, self.config.num_generations
        num_prompts = len(batch.rollout) // n
        accumulate = config.gradient_accumulation_steps
        losses, grad_norms, stats = [], [], {}
        for _ in range(config.num_epochs):
            order = torch.randperm(num_prompts)
            for k, prompt_index in enumerate(order.split(config.minibatch_prompts)):
                rows = (prompt_index[:, None] * n + torch.arange(n)).flatten()
                sync = (k + 1) % accumulate == 0
                if config.max_tokens_per_microbatch:
                    loss, step_stats = self._microbatched(batch.select(rows), accumulate, sync)
                else:
                    with self._gradient_sync(sync):
                        loss, step_stats = self.objective.loss(batch.select(rows), self.policy)
                        self.accelerator.backward(loss / accumulate)
                losses.append(loss.item())
                for key, value in step_stats.items():
                    stats.setdefault(key, []).append(value)
                if sync:
                    norm = self.accelerator.clip_grad_norm_(self.trainable_params, config.max_grad_norm)
                    grad_norms.append(float(norm))
                    self.optimizer.step()
                    batch.current_token_logps = None  # made with the weights before this step
                    self.policy.weights_updated()
                    self.scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
        return losses, grad_norms, {key: sum(v) / len(v) for key, v in stats.items()}

    def _gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        """DDP's all-reduce on this backward (`sync`), or accumulate locally (no_sync)."""
        if sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.policy.train_module)

    def _microbatched(self, minibatch: Batch, accumulate: int, sync: bool
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """The minibatch's backward, with the policy's forwards in micro-batches of at most
        `max_tokens_per_microbatch` real tokens, and exactly the one-pass gradient (chain rule,
        docs/long_completions.md): (a) log pi_theta per token of each micro-batch without a graph;
        (b) the objective's loss on the whole minibatch with those as a leaf, backward, giving
        dL/d(log pi_theta); (c) per micro-batch, the forward again with a graph and its backward
        with that gradient. Processes run the same number of micro-batches (FSDP2 and DDP forwards
        are collectives); DDP syncs only on the last backward of a sync step."""
        policy, rollout = self.policy, minibatch.rollout
        budget = self.config.max_tokens_per_microbatch
        parts = microbatch_rows(rollout, self.config.num_generations, budget)
        if self.accelerator.num_processes > 1:
            count = torch.tensor([len(parts)], device=self.accelerator.device)
            most = int(self.accelerator.gather(count).max())
            parts = microbatch_rows(rollout, self.config.num_generations, budget, at_least=most)
        with torch.no_grad():
            pieces = [policy.token_log_probs(narrowed(rollout.select(part))) for part in parts]
        leaf = pieces[0].new_zeros(rollout.completion_mask.shape)
        for part, piece in zip(parts, pieces):
            leaf[part.to(leaf.device), : piece.shape[1]] = piece
        leaf.requires_grad_(True)
        # step() leaves current_token_logps None here: reusing one graph over the whole batch is
        # what micro-batching avoids (update_forward_gives_old_logps is off with the option)
        loss, stats = self.objective.loss(replace(minibatch, current_token_logps=leaf), policy)
        self.accelerator.backward(loss / accumulate)  # (b): other modules (PPO's values) get theirs
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        for i, part in enumerate(parts):
            with self._gradient_sync(sync and i == len(parts) - 1):
                logps = policy.token_log_probs(narrowed(rollout.select(part)))
                # grad already holds 1/accumulate and any fp16 loss scale, so a plain backward
                logps.backward(grad[part.to(grad.device), : logps.shape[1]].to(logps.dtype))
        return loss.detach(), stats

    # ------------------------------------------------------------------ helpers
    def _prompt_indices(self, iteration: int) -> list[int]:
        """Prompts for an iteration: a seeded reshuffle per pass over the data, so resuming repeats nothing."""
        size = len(self.train_prompts)
        per_iteration = self.config.prompts_per_iteration
        start = (iteration * self.accelerator.num_processes + self.accelerator.process_index) * per_iteration
        indices = []
        for position in range(start, start + per_iteration):
            data_pass = position // size
            order = torch.randperm(size, generator=torch.Generator().manual_seed(self.config.seed * 100_003 + data_pass))
            indices.append(int(order[position % size]))
        return indices

    def _sampling_metrics(self) -> dict[str, float]:
        """The policy's sampling diagnostics (vllm/logprob_diff), averaged over processes: each has its own
        sampler (a vLLM engine per process), and one left behind must show in the log."""
        device = self.accelerator.device
        return {name: self.accelerator.gather(torch.tensor([value], device=device)).mean().item()
                for name, value in self.policy.sampling_metrics().items()}

    def _metrics(self, rollout, score, named, kl, reward, losses, grad_norms, seconds) -> dict[str, Any]:
        gather = self.accelerator.gather
        score_all, kl_all, reward_all = gather(score.float()), gather(kl.float()), gather(reward.float())
        lengths = gather(rollout.lengths.float())
        no_eos = gather((~rollout.has_eos).float())
        metrics = {
            "iteration": self.iteration,
            "reward_queries": self.reward_queries,
            "reward": score_all.mean().item(),
            "reward_std": score_all.std().item(),
            # prompts whose n samples all scored the same: for REBEL their pairs carry no reward signal
            "identical_score_fraction": identical_score_fraction(score_all, self.config.num_generations),
            # nanmean: a reward that returned None (not applicable) is averaged over the samples it scored
            **{f"rewards/{name}": gather(v.to(score.device).float()).nanmean().item() for name, v in named.items()},
            "kl": kl_all.mean().item(),
            "rlhf_reward": reward_all.mean().item(),
            "loss": sum(losses) / len(losses),
            "grad_norm": sum(grad_norms) / max(1, len(grad_norms)),
            "learning_rate": self.scheduler.get_last_lr()[0],
            "completions/mean_length": lengths.mean().item(),
            "completions/min_length": lengths.min().item(),
            "completions/max_length": lengths.max().item(),
            "completions/no_eos_fraction": no_eos.mean().item(),
            **{f"time/{phase}": s for phase, s in seconds.items()},
            "tokens_per_second": rollout.lengths.sum().item() / max(seconds["sampling"], 1e-9),
        }
        return metrics

    def _evaluate_before(self) -> EvalResult | None:
        """Evaluate pi_ref on the held-out prompts (once; a resumed run reads the saved result)."""
        if self.eval_prompts is None:
            return None
        saved = self.run_dir / "eval_before.json"
        if saved.is_file():
            import json

            return EvalResult(**json.loads(saved.read_text()))
        result = self._evaluate(reference=True)
        if self.is_main:
            write_json(saved, result.to_dict())
        return result

    def _evaluate(self, reference: bool) -> EvalResult:
        config = self.config
        return evaluate(self.policy, self.eval_prompts, self.rewards, eval_reward_set=self.eval_rewards,
                        num_generations=config.eval_generations or config.num_generations,
                        temperature=config.eval_temperature, batch_size=config.eval_batch_size, reference=reference,
                        seed=config.seed, shard=self._eval_shard())

    def _eval_shard(self) -> Shard | None:
        """Processes split the held-out batches between them (all get the whole result)."""
        accelerator = self.accelerator
        if accelerator.num_processes == 1:
            return None
        return Shard(accelerator.process_index, accelerator.num_processes, gather_object)

    def _periodic_eval(self) -> dict[str, Any]:
        """Held-out metrics for learning curves, against the number of reward queries so far."""
        result = self._evaluate(reference=False)
        self._latest_eval = (self.iteration, result)
        return {"iteration": self.iteration, "reward_queries": self.reward_queries, "eval/reward": result.reward,
                "eval/kl": result.kl, **{f"eval/{name}": value for name, value in result.rewards.items()},
                **{f"eval/{name}/{metric}": value for name, metrics in result.verified.items()
                   for metric, value in metrics.items()}}

    def _eval_label(self) -> str:
        if self.eval_held_out:
            return f"{len(self.eval_prompts)} held-out prompts"
        return f"{len(self.eval_prompts)} prompts of the training file (pass eval_dataset for a held-out set)"

    def save_checkpoint(self) -> dict | None:
        """Write a checkpoint; return the gathered model state (None unless sharded) for reuse.
        Collectives under FSDP2: every process gathers, the main one writes."""
        model_state = gathered_model_state(self.policy.model)
        optimizer_state = gathered_optimizer_state(self.policy.model, self.optimizer)
        if self.is_main:
            ckpt.save_checkpoint(self.run_dir / "checkpoints", self.iteration, self.policy, optimizer_state,
                                 self.scheduler,
                                 {"reward_queries": self.reward_queries, "objective": self.objective.state_dict()},
                                 model_state=model_state)
        self.accelerator.wait_for_everyone()
        return model_state

    def _finish(self, before: EvalResult | None, model_state: dict | None) -> dict[str, Any]:
        """Held-out evaluation, table and plot; then the final model (and a merged one on request).
        `model_state`: the weights gathered for the last checkpoint (None unless sharded), saved again."""
        config = self.config
        summary: dict[str, Any] = {"run_dir": str(self.run_dir), "iterations": self.iteration,
                                   "reward_queries": self.reward_queries}
        if before is not None:
            latest = self._latest_eval
            # Same policy, prompts and seed: a periodic eval at this iteration already is the final one.
            after = latest[1] if latest and latest[0] == self.iteration else self._evaluate(reference=False)
            summary.update(before=before.to_dict(), after=after.to_dict())
            if self.is_main:
                write_json(self.run_dir / "eval.json", {"before": before.to_dict(), "after": after.to_dict()})
                (self.run_dir / "eval.md").write_text(before_after_markdown(before, after, self._eval_label()))
                if config.progress:
                    print_before_after(before, after, self._eval_label())
        if self.is_main:
            plot_reward_kl(read_metrics(self.run_dir), self.run_dir / "reward_kl.png")
            if self.policy.supports.images:  # before/after grid on the same noise, per-reward curves
                from ..run.image_outputs import write_run_images

                prompts = (self.eval_prompts or self.train_prompts)["prompt"]
                write_run_images(self.policy, prompts, self.run_dir, read_metrics(self.run_dir), config.seed)
            ckpt.save_policy_atomic(self.policy, self.run_dir / "final", state_dict=model_state)
            if config.merge_adapter and config.use_lora:
                # Last step: merging folds the adapter into the base weights, so pi_ref is gone after it.
                merged = self.policy.merged_model()
                ckpt.save_policy_atomic(self.policy, self.run_dir / "final" / "merged", model=merged)
            if config.push_to_hub:
                from ..run.hub import push_run

                summary["hub_url"] = push_run(self.run_dir, config.hub_model_id, private=config.hub_private)
        self.accelerator.wait_for_everyone()
        return summary


def sharding_needs(config: RebelConfig, supports: PolicySupports) -> dict[str, bool]:
    """What `check_sharding` refuses under FSDP2, from the policy kind's and the algorithm's declarations."""
    spec = algorithm_spec(config.algorithm)
    return {supports.description: not supports.sharding, f"algorithm {spec.name}": not spec.sharding,
            "merge_adapter": config.merge_adapter and config.use_lora,
            # the weight push reads whole tensors; FSDP2 holds shards (DDP: one engine per
            # process, docs/vllm.md); a vLLM server is pushed whole tensors too
            f"generation_backend {config.sampling.generation_backend}":
                config.sampling.generation_backend in ("vllm", "vllm_server")}


class _PhaseTimer:
    """Wall-clock seconds per named phase of an iteration."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, phase: str):
        start = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - start


def train(config: RebelConfig, **objects: Any) -> dict[str, Any]:
    """Train with REBEL as `config` says; return a summary (run dir, held-out before/after).
    Keyword arguments (`model`, `tokenizer`, `train_dataset`, `eval_dataset`, `reward_funcs`, `reward_model`,
    `preference_func`, `environment`) are objects in memory, as for `RebelTrainer`."""
    return RebelTrainer(config, **objects).train()


_OBJECTS = ("model", "tokenizer", "train_dataset", "eval_dataset", "reward_funcs", "reward_model",
            "preference_func", "environment")


def resume(run_dir: str | Path, *, new_lr_schedule: bool = False, **objects_and_overrides: Any) -> dict[str, Any]:
    """Continue the run in `run_dir` from its latest checkpoint that loads (optionally with more iterations).

    Options that change the learning-rate schedule (a larger num_iterations re-stretches a decayed one) are
    refused unless `new_lr_schedule`, which continues on the new options' schedule. A folder with no
    checkpoint and no completed iteration starts from the beginning. A run started with Python objects
    (`reward_funcs`, `preference_func`, `model`, `train_dataset`, ...) needs the same objects again, as
    keyword arguments: they are not in config.yaml. Other keyword arguments override config fields.
    """
    objects = {k: objects_and_overrides.pop(k) for k in _OBJECTS if k in objects_and_overrides}
    overrides = objects_and_overrides
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise RunDirError(f"nothing to resume in {run_dir}: it has no {CONFIG_FILE}")
    config = RebelConfig.from_yaml(run_dir / CONFIG_FILE).with_overrides({**overrides, "output_dir": str(run_dir)})
    with ckpt.config_restored_on_error(run_dir / CONFIG_FILE):  # a refused resume leaves the run as it was
        trainer = RebelTrainer(config, **objects, resume=True, new_lr_schedule=new_lr_schedule)
    return trainer.train()
