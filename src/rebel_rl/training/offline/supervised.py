"""The epoch loop shared by the offline stages (SFT, reward model, DPO): minibatches, AdamW with a
warmup schedule, gradient clipping, held-out evaluation every epoch, metrics.jsonl, progress bar.

A stage supplies `batch_loss(rows) -> (loss, metrics)` and `evaluate() -> metrics`; everything else
is here, so the three trainers cannot drift apart. Runs on accelerate (device, mixed precision), in
one process: the offline stages are small next to RL.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate.utils import set_seed
from rich.console import Console
from transformers import get_scheduler

from ...policies.causal_lm.policy import resolve_mixed_precision
from ...sharding import make_accelerator
from ..progress import ProgressBar
from ..run.checkpoint import save_pretrained_atomic
from ..run.outputs import (
    CONFIG_FILE,
    METRICS_FILE,
    _append_jsonl,
    prepare_run_dir,
    write_json,
)

BatchLoss = Callable[[list[int]], tuple[torch.Tensor, dict[str, float]]]
Evaluate = Callable[[], dict[str, float]]


class SupervisedTrainer:
    """Runs `num_epochs` passes of minibatch AdamW over a stage's rows, as its config says.

    The config (a stage config) needs the groups `output` (output_dir, overwrite, progress),
    `model` (mixed_precision) and `optim` (seed, num_epochs, batch_size, learning_rate,
    weight_decay, warmup_ratio, lr_scheduler, max_grad_norm, logging_steps).
    Creating it seeds every generator (so build models after it) and writes nothing to disk.
    """

    def __init__(self, config: Any, title: str) -> None:
        self.config = config
        self.title = title
        self.run_dir = Path(config.output.output_dir)
        if not config.output.overwrite and self.run_dir.exists():
            # fails fast (before models load) on an existing run
            prepare_run_dir(self.run_dir, overwrite=False)
        set_seed(config.optim.seed)
        self.accelerator = make_accelerator(resolve_mixed_precision(config.model.mixed_precision))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def prepare(self, model: torch.nn.Module, num_rows: int) -> torch.nn.Module:
        """Build the optimizer and schedule for `model` and return the module to run forward passes
        through (wrapped by accelerate for mixed precision)."""
        config = self.config
        self.num_rows = num_rows
        self.params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            self.params, lr=config.optim.learning_rate, weight_decay=config.optim.weight_decay
        )
        self.total_steps = config.optim.num_epochs * math.ceil(num_rows / config.optim.batch_size)
        scheduler = config.optim.lr_scheduler
        name = "constant_with_warmup" if scheduler == "constant" else scheduler
        self.scheduler = get_scheduler(
            name,
            optimizer,
            num_warmup_steps=int(config.optim.warmup_ratio * self.total_steps),
            num_training_steps=self.total_steps,
        )
        self.model = model
        module, self.optimizer = self.accelerator.prepare(model, optimizer)
        return module

    def fit(
        self, batch_loss: BatchLoss, evaluate: Evaluate | None, train_mode: bool = True
    ) -> dict[str, Any]:
        """Create the run directory, evaluate, then train epoch by epoch (evaluating after each);
        return the last evaluation's metrics and the training time in seconds."""
        config = self.config
        prepare_run_dir(self.run_dir, config.output.overwrite)
        config.save_yaml(self.run_dir / CONFIG_FILE)
        self.step, start = 0, time.perf_counter()
        last_eval = self._evaluate(evaluate, epoch=0)
        progress_on = config.output.progress
        with _StageProgress(self.title, self.total_steps, enabled=progress_on) as progress:
            for epoch in range(config.optim.num_epochs):
                self._epoch(epoch, batch_loss, progress, train_mode)
                last_eval = self._evaluate(evaluate, epoch=epoch + 1) or last_eval
                progress.show_eval(last_eval)
        return {
            "eval": last_eval,
            "train_seconds": round(time.perf_counter() - start, 1),
            "steps": self.step,
        }

    def _epoch(
        self, epoch: int, batch_loss: BatchLoss, progress: "_StageProgress", train_mode: bool
    ) -> None:
        config = self.config
        order = torch.randperm(
            self.num_rows, generator=torch.Generator().manual_seed(config.optim.seed * 1000 + epoch)
        )
        minibatches = order.split(config.optim.batch_size)
        window: list[dict[str, float]] = []
        self.model.train(train_mode)
        for index, rows in enumerate(minibatches):
            loss, metrics = batch_loss(rows.tolist())
            self.accelerator.backward(loss)
            norm = self.accelerator.clip_grad_norm_(self.params, config.optim.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            window.append({"loss": loss.item(), "grad_norm": float(norm), **metrics})
            progress.advance(window[-1]["loss"])
            if len(window) == config.optim.logging_steps or index == len(minibatches) - 1:
                self._log(
                    {
                        "epoch": round(epoch + (index + 1) / len(minibatches), 3),
                        **_mean(window),
                        "learning_rate": self.scheduler.get_last_lr()[0],
                    }
                )
                window = []
        self.model.eval()

    def _evaluate(self, evaluate: Evaluate | None, epoch: int) -> dict[str, float] | None:
        if evaluate is None:
            return None
        self.model.eval()
        with torch.no_grad():
            metrics = evaluate()
        self._log({"epoch": epoch, **metrics})
        return metrics

    def _log(self, metrics: dict[str, Any]) -> None:
        _append_jsonl(self.run_dir / METRICS_FILE, {"step": self.step, **metrics})

    def save(self, model: Any, tokenizer: Any, results: dict[str, Any] | None = None) -> Path:
        """Save `model` and `tokenizer` atomically to OUTPUT/final (and `results` to
        OUTPUT/eval.json)."""
        final = self.run_dir / "final"
        save_pretrained_atomic(model, tokenizer, final)
        if results is not None:
            write_json(self.run_dir / "eval.json", results)
        if self.config.output.progress:
            Console(stderr=True).print(f"[bold]{self.title}[/bold] saved {final}")
        return final


def batches(count: int, size: int) -> list[list[int]]:
    """Consecutive row indices 0..count-1 in batches of `size` (for evaluation passes)."""
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def preference_accuracy(
    margins: torch.Tensor, judge_prefers_chosen: list[bool] | None
) -> dict[str, float]:
    """How well a scorer ranks held-out pairs, from its margins score(chosen) - score(rejected) (a
    tie counts as wrong): accuracy against the dataset's labels and, when the dataset has noise-free
    `judge_prefers_chosen` labels, against those; each with its binomial standard error."""
    prefers_chosen = margins.detach().float().cpu() > 0
    metrics = {
        "eval_margin": margins.float().mean().item(),
        **_accuracy("eval_accuracy", prefers_chosen),
    }
    if judge_prefers_chosen is not None:
        judge = torch.tensor(judge_prefers_chosen, dtype=torch.bool)
        metrics.update(_accuracy("eval_judge_accuracy", prefers_chosen == judge))
        # How noisy the training labels are: the ceiling of `eval_accuracy` for a scorer that agrees
        # with the judge.
        metrics["eval_label_judge_agreement"] = judge.float().mean().item()
    return metrics


def _accuracy(name: str, hits: torch.Tensor) -> dict[str, float]:
    p = hits.float().mean().item()
    return {name: p, f"{name}_stderr": math.sqrt(p * (1 - p) / len(hits))}


def _mean(records: list[dict[str, float]]) -> dict[str, float]:
    return {key: sum(r[key] for r in records) / len(records) for key in records[0]}


class _StageProgress(ProgressBar):
    """The shared bar over optimizer steps, with the running loss and the last evaluation."""

    def __init__(self, title: str, total: int, enabled: bool) -> None:
        super().__init__(title, total, enabled=enabled)
        self.loss: float | None = None
        self.eval = ""

    def advance(self, loss: float) -> None:
        # An exponential average: single minibatch losses jump around too much to read.
        self.loss = loss if self.loss is None else 0.9 * self.loss + 0.1 * loss
        self.show(f"loss {self.loss:.3f}{self.eval}")

    def show_eval(self, metrics: dict[str, float] | None) -> None:
        if metrics:
            key = "eval_accuracy" if "eval_accuracy" in metrics else "eval_loss"
            self.eval = f"  {key} {metrics[key]:.3f}"
            self.show(f"loss {self.loss or 0:.3f}{self.eval}", advance=0)
