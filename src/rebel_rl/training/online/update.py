"""The update of one iteration: `num_epochs` passes over minibatches of prompts (each with its n
samples), one loss each, an optimizer step every `gradient_accumulation_steps` minibatches; with
`max_tokens_per_microbatch`, a minibatch's backward runs in micro-batches of rows (microbatch.py)
and still gives exactly the one-pass gradient (docs/long_completions.md).
"""
from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any, Callable

import torch

from ...config.run import TrainingConfig
from ...policies.base import Policy
from .methods import Batch, Objective
from .microbatch import microbatch_rows, narrowed
from .setup import Optimization


class Update:
    """Runs an objective's loss over an iteration's batch and steps the optimizer; built once per
    run from the `training` group."""

    def __init__(self, training: TrainingConfig, n: int, prompts_per_iteration: int, policy: Policy,
                 objective: Objective, accelerator: Any, optimization: Optimization) -> None:
        self.training, self.n = training, n
        self.policy, self.objective, self.accelerator = policy, objective, accelerator
        self.optimization = optimization
        minibatches = prompts_per_iteration // training.minibatch_prompts
        # One epoch in one minibatch: a single forward over the whole batch before the weights
        # change, which is log pi_t too (loop.py's `step`). Not with micro-batches: that
        # forward's graph spans the whole batch (`microbatched`).
        self.forward_gives_old_logps = (training.num_epochs == 1 and minibatches == 1
                                        and not training.max_tokens_per_microbatch)

    def __call__(self, batch: Batch) -> tuple[list[float], list[float], dict[str, float]]:
        """(loss per minibatch, gradient norm per optimizer step, the mean of each loss metric)."""
        training, n, opt = self.training, self.n, self.optimization
        num_prompts = len(batch.rollout) // n
        accumulate = training.gradient_accumulation_steps
        losses, grad_norms, stats = [], [], {}
        for _ in range(training.num_epochs):
            order = torch.randperm(num_prompts)
            for k, prompt_index in enumerate(order.split(training.minibatch_prompts)):
                rows = (prompt_index[:, None] * n + torch.arange(n)).flatten()
                sync = (k + 1) % accumulate == 0
                if training.max_tokens_per_microbatch:
                    loss, step_stats = self.microbatched(batch.select(rows), accumulate, sync)
                else:
                    with self.gradient_sync(sync):
                        loss, step_stats = self.objective.loss(batch.select(rows), self.policy)
                        self.accelerator.backward(loss / accumulate)
                losses.append(loss.item())
                for key, value in step_stats.items():
                    stats.setdefault(key, []).append(value)
                if sync:
                    norm = self.accelerator.clip_grad_norm_(opt.trainable_params,
                                                            training.max_grad_norm)
                    grad_norms.append(float(norm))
                    opt.optimizer.step()
                    batch.current_token_logps = None  # made with the weights before this step
                    self.policy.weights_updated()
                    opt.scheduler.step()
                    opt.optimizer.zero_grad(set_to_none=True)
        return losses, grad_norms, {key: sum(v) / len(v) for key, v in stats.items()}

    def gradient_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        """DDP's all-reduce on this backward (`sync`), or accumulate locally (no_sync)."""
        if sync:
            return contextlib.nullcontext()
        return self.accelerator.no_sync(self.policy.train_module)

    def row_parts(self, rollout: Any) -> list[torch.Tensor]:
        """The rollout's rows in micro-batches of at most `max_tokens_per_microbatch` real tokens,
        as many on every process (FSDP2 and DDP forwards are collectives)."""
        budget = self.training.max_tokens_per_microbatch
        parts = microbatch_rows(rollout, self.n, budget)
        if self.accelerator.num_processes > 1:
            count = torch.tensor([len(parts)], device=self.accelerator.device)
            most = int(self.accelerator.gather(count).max())
            parts = microbatch_rows(rollout, self.n, budget, at_least=most)
        return parts

    @staticmethod
    def assembled(rollout: Any, parts: list[torch.Tensor],
                  token_log_probs: Callable[[Any], torch.Tensor]) -> torch.Tensor:
        """`token_log_probs` of each part's rows, without gradients, put back into one (N, T)."""
        with torch.no_grad():
            pieces = [token_log_probs(narrowed(rollout.select(part))) for part in parts]
        whole = pieces[0].new_zeros(rollout.completion_mask.shape)
        for part, piece in zip(parts, pieces):
            whole[part.to(whole.device), : piece.shape[1]] = piece
        return whole

    def fixed_token_log_probs(self, rollout: Any, reuse_forward: bool
                              ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """log pi_ref and log pi_t per token, without gradients (pi_t None when the update's
        forward will give it). Under a token budget these passes run in the update's micro-batches
        too: a whole batch of long rows in one forward would set the run's peak memory."""
        policy = self.policy
        if not self.training.max_tokens_per_microbatch:
            with torch.no_grad():
                ref = policy.token_log_probs(rollout, reference=True)
                return ref, None if reuse_forward else policy.sampling_token_log_probs(rollout)
        parts = self.row_parts(rollout)
        ref = self.assembled(rollout, parts,
                             lambda rows: policy.token_log_probs(rows, reference=True))
        if rollout.recorded_token_log_probs is not None:
            return ref, policy.sampling_token_log_probs(rollout)
        return ref, policy.sampling_token_log_probs(
            rollout, self.assembled(rollout, parts, policy.token_log_probs))

    def microbatched(self, minibatch: Batch, accumulate: int, sync: bool
                     ) -> tuple[torch.Tensor, dict[str, float]]:
        """The minibatch's backward, with the policy's forwards in micro-batches of at most
        `max_tokens_per_microbatch` real tokens, and exactly the one-pass gradient (chain rule,
        docs/long_completions.md): (a) log pi_theta per token of each micro-batch without a graph;
        (b) the objective's loss on the whole minibatch with those as a leaf, backward, giving
        dL/d(log pi_theta); (c) per micro-batch, the forward again with a graph and its backward
        with that gradient. Processes run the same number of micro-batches (FSDP2 and DDP forwards
        are collectives); DDP syncs only on the last backward of a sync step."""
        policy, rollout, accelerator = self.policy, minibatch.rollout, self.accelerator
        parts = self.row_parts(rollout)
        leaf = self.assembled(rollout, parts, policy.token_log_probs).requires_grad_(True)
        # step() leaves current_token_logps None here: reusing one graph over the whole batch is
        # what micro-batching avoids (forward_gives_old_logps is off with the option)
        loss, stats = self.objective.loss(replace(minibatch, current_token_logps=leaf), policy)
        accelerator.backward(loss / accumulate)  # (b): other modules (PPO's values) get theirs
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(leaf)
        for i, part in enumerate(parts):
            with self.gradient_sync(sync and i == len(parts) - 1):
                logps = policy.token_log_probs(narrowed(rollout.select(part)))
                # grad already holds 1/accumulate and any fp16 loss scale, so a plain backward
                logps.backward(grad[part.to(grad.device), : logps.shape[1]].to(logps.dtype))
        return loss.detach(), stats
