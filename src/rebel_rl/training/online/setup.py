"""What a run builds before its first iteration, each piece from its own config group: the cheap
checks, the prompts, the policy, the rewards, the optimizer and schedule, and the state restored on
resume. `RebelTrainer.__init__` (loop.py) calls these in order; nothing here samples or trains.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from transformers import TrainerState, get_scheduler

from ...config import AlgorithmSpec, RebelConfig, algorithm_spec
from ...config.run import DataConfig, EvalConfig, RewardConfig, TrainingConfig
from ...data import load_prompt_dataset
from ...policies.base import Policy, PolicySupports
from ...policies.factory import PolicyKind, check_policy_source, load_policy
from ...rewards import RewardSet, check_reward_spec
from ...rewards.preferences import NoRewards, check_preference_spec
from ...rewards.reward_model import RewardModel
from ...sharding import load_optimizer_state
from ..run import checkpoint as ckpt
from .pairs import check_completion_columns


def check_inputs(config: RebelConfig, spec: AlgorithmSpec, model_object: bool,
                 preference_func: Any) -> PolicyKind:
    """Every cheap check before anything loads: the policy kind against the algorithm (its default
    temperature is filled in, so config.yaml records it), the reward specs, the preference spec."""
    sampling, reward = config.sampling, config.reward
    kind = check_policy_source(config.model, spec, config.data.pair_source, sampling,
                               objects=model_object)
    if sampling.temperature is None:
        sampling.temperature = kind.supports.default_temperature
    for reward_spec in [*reward.rewards, *config.evaluation.eval_rewards]:
        check_reward_spec(reward_spec)
    if reward.preference is not None and preference_func is None:
        check_preference_spec(reward.preference)
    return kind


def load_train_prompts(data: DataConfig, train_dataset: Any = None):
    """The training prompts; a dataset object passed in wins over the config's path (inputs.json
    records it)."""
    source = data.dataset if train_dataset is None else train_dataset
    prompts = load_prompt_dataset(source, data.dataset_split, data.prompt_column)
    check_completion_columns(prompts, data)
    return prompts


def load_eval_prompts(data: DataConfig, evaluation: EvalConfig, train_dataset: Any = None,
                      eval_dataset: Any = None) -> tuple[Any, bool]:
    """(held-out prompts or None, whether they are really held out). A single file (or Dataset
    object) has no splits: its "held-out" prompts are training prompts, and reports say so; a
    DatasetDict object gives its eval_split."""
    if evaluation.eval_prompts == 0:
        return None, False
    separate = eval_dataset if eval_dataset is not None else data.eval_dataset
    source = next(s for s in (separate, train_dataset, data.dataset) if s is not None)
    if separate is not None:
        held_out = True
    elif train_dataset is not None:
        held_out = isinstance(train_dataset, dict)
    else:
        held_out = not Path(data.dataset).is_file()
    dataset = load_prompt_dataset(source, data.eval_split, data.prompt_column)
    return dataset.select(range(min(evaluation.eval_prompts, len(dataset)))), held_out


def load_run_policy(config: RebelConfig, accelerator: Any, prompt_sets: list, model: Any = None,
                    tokenizer: Any = None) -> Policy:
    """The policy, with the same initial weights (LoRA's random A) on every process: DDP would
    broadcast rank 0's, but FSDP2 shards each process's own, so differing inits would stitch one
    matrix from several. Every prompt of `prompt_sets` is tokenized once up front, so a too-long
    one stops the run here."""
    seed = config.training.seed
    set_seed(seed)
    policy = load_policy(config.model, config.sampling, accelerator.device,
                         config.data.max_prompt_length, model_object=model, tokenizer=tokenizer)
    if accelerator.process_index:
        set_seed(seed + accelerator.process_index)
    for prompts in prompt_sets:
        if prompts is not None:
            policy.check_prompts(prompts["prompt"])
    return policy


def build_rewards(reward: RewardConfig, evaluation: EvalConfig, num_iterations: int, device: str,
                  reward_funcs: list | None = None, reward_model: Any = None
                  ) -> tuple[Any, RewardSet | None, TrainerState]:
    """(training rewards, evaluation-only rewards or None, their shared TrainerState). The training
    rewards are the config's specs, the Python callables and a reward-model object; both sets read
    the same trainer state (TRL rewards take it as `trainer_state`)."""
    extra = list(reward_funcs or [])
    if reward_model is not None:  # (model, tokenizer) of a sequence-classification reward model
        given = isinstance(reward_model, (tuple, list))
        pair = tuple(reward_model) if given else (reward_model, None)
        extra.append(RewardModel(pair, device=device))
    weights = (None if reward.reward_weights is None
               else list(reward.reward_weights) + [1.0] * len(extra))
    specs = list(reward.rewards) + extra
    guard = {"timeout": reward.reward_timeout, "failure_score": reward.reward_failure_score,
             "workers": reward.reward_workers,
             "max_consecutive_failures": reward.reward_max_consecutive_failures}
    rewards = RewardSet(specs, weights, device=device, **guard) if specs else NoRewards()
    eval_rewards = (RewardSet(evaluation.eval_rewards, device=device, **guard)
                    if evaluation.eval_rewards else None)
    trainer_state = TrainerState(max_steps=num_iterations)
    for reward_set in (rewards, eval_rewards):
        if reward_set is not None:
            reward_set.trainer_state = trainer_state
    return rewards, eval_rewards, trainer_state


@dataclass
class Optimization:
    """The prepared optimizer, its schedule and the parameters it steps (sharded under FSDP2)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    trainable_params: list[torch.nn.Parameter]


def build_optimizer(training: TrainingConfig, prompts_per_iteration: int, policy: Policy,
                    objective: Any, accelerator: Any) -> Optimization:
    """AdamW over the policy's and the objective's trainable parameters, with warmup and decay over
    every optimizer step of the run; the policy and those modules prepared by accelerate. The
    scheduler stays outside accelerate: it steps once per real optimizer step, on every process."""
    modules = objective.modules()
    params = [p for m in [policy.model, *modules] for p in m.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=training.learning_rate,
                                  weight_decay=training.weight_decay)
    minibatches = prompts_per_iteration // training.minibatch_prompts
    per_epoch = minibatches // training.gradient_accumulation_steps
    steps = training.num_iterations * training.num_epochs * per_epoch
    name = "constant_with_warmup" if training.lr_scheduler == "constant" else training.lr_scheduler
    scheduler = get_scheduler(name, optimizer, num_warmup_steps=int(training.warmup_ratio * steps),
                              num_training_steps=steps)
    train_module, *prepared, optimizer = accelerator.prepare(policy.model, *modules, optimizer)
    policy.prepare_training(train_module, accelerator.autocast)
    objective.set_train_modules(prepared)
    # After prepare: FSDP2 replaces the parameters by sharded ones (the optimizer points at them).
    trainable = [p for group in optimizer.param_groups for p in group["params"]]
    return Optimization(optimizer, scheduler, trainable)


def restore(path: Path, policy: Policy, objective: Any, optimization: Optimization,
            new_lr_schedule: bool, prefetcher: Any = None) -> tuple[int, int]:
    """Load the optimizer, schedule, RNG, the objective's state and the in-flight batch of async
    rollouts (`prefetcher`, rollouts.py) of checkpoint `path`; return its (iteration,
    reward_queries)."""
    state = ckpt.load_trainer_state(path, optimization.scheduler, new_schedule=new_lr_schedule)
    load_optimizer_state(policy.model, optimization.optimizer, state["optimizer"])
    objective.load_state_dict(state["counters"].get("objective", {}))
    if prefetcher is not None:
        prefetcher.load_state_dict(state["counters"].get("async_rollout", {}))
    return state["iteration"], state["counters"]["reward_queries"]


def sharding_needs(config: RebelConfig, supports: PolicySupports) -> dict[str, bool]:
    """What `check_sharding` refuses under FSDP2, from the policy kind's and the algorithm's
    declarations."""
    spec = algorithm_spec(config.training.algorithm)
    model, backend = config.model, config.sampling.generation_backend
    return {supports.description: not supports.sharding,
            f"algorithm {spec.name}": not spec.sharding,
            "merge_adapter": model.merge_adapter and model.use_lora,
            # the weight push reads whole tensors; FSDP2 holds shards (DDP: one engine per
            # process, docs/vllm.md); a vLLM server is pushed whole tensors too
            f"generation_backend {backend}": backend in ("vllm", "vllm_server"),
            "async_rollouts": config.training.async_rollouts > 0}
