"""`rebel evaluate`: score a saved policy on a prompt split, as the paper's tables do.

Reports, each with a standard error over prompts: every reward and evaluation-only reward (for
the built-in TL;DR task, the judge's win rate against the reference summaries and the reward-model
score), and KL(pi || pi_ref) estimated from samples. Scores are taken at `temperature` (the paper
used 0.01); the KL samples are drawn at `kl_temperature`, the temperature the policy was trained at.
With `environment`, every sample is a multi-turn episode (docs/multiturn.md) played at
`kl_temperature` (its KL from the same episodes): the reward is its return plus the rewards, and
the result adds the success rate (return > 0), the mean turns and, for a 0/1 return, pass@k.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ConfigBase
from ..config.base import option
from ..errors import ConfigError, ModelError, first_line


TLDR_DATASET = "builtin:tldr"
TLDR_REWARDS = ("tldr_judge",)  # need builtin:tldr's `facts` column
TLDR_EVAL_REWARDS = ("tldr_win_rate",)  # needs its `facts` and `reference` columns


@dataclass
class EvaluateConfig(ConfigBase):
    """Options of `rebel evaluate`. Each field's `option(...)` help is the reference docs."""

    command = "evaluate"

    model_name_or_path: str = option(
        "",
        "the policy: a saved model (full or LoRA adapter) or hub id",
    )
    reference_model: str | None = option(
        None,
        "pi_ref for KL (e.g. the SFT model); default: the base",
    )
    dataset: str = option(
        "builtin:tldr",
        "prompts: file, save_to_disk folder, hub id or builtin:NAME",
    )
    split: str = option("test", "split of `dataset`")
    prompt_column: str = option("prompt", "column holding the prompts")
    num_prompts: int = option(0, "evaluate the first N prompts (0 = all)")
    rewards: list[str] | None = option(
        None,
        "summed into `reward`; default on builtin:tldr: tldr_judge",
    )
    eval_rewards: list[str] | None = option(
        None,
        "reported alone; builtin:tldr: tldr_win_rate; none: none",
    )
    num_generations: int = option(1, "samples per prompt")
    temperature: float = option(
        0.01,
        "sampling temperature of the scored completions (the paper: 0.01)",
    )
    kl_temperature: float = option(
        1.0,
        "temperature of the KL(pi || pi_ref) samples: the training one",
    )
    max_new_tokens: int = option(48, "completion length cap")
    max_prompt_length: int = option(512, "longer prompts are an error")
    batch_size: int = option(64, "sequences per sampling batch")
    seed: int = option(0, "sampling seed")
    environment: str | None = option(
        None,
        "play episodes: module:Class, file.py:Class or builtin:NAME",
    )
    max_turns: int = option(4, "environment: most policy turns per episode")
    max_total_tokens: int = option(512, "environment: most tokens per episode, all turns")
    step_timeout: float | None = option(None, "environment: seconds per reset/step call")
    output: str | None = option(None, "write the result as JSON here (default: print only)")

    def validate(self) -> "EvaluateConfig":
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path is required: the folder of the model to evaluate")
        for name in ["num_generations", "max_new_tokens", "batch_size", "max_prompt_length",
                     "max_turns", "max_total_tokens"]:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ["temperature", "kl_temperature", "step_timeout"]:
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.num_prompts < 0:
            raise ConfigError(f"num_prompts must be >= 0, got {self.num_prompts}")
        self._resolve_reward_defaults()
        return self

    def _resolve_reward_defaults(self) -> None:
        """The TL;DR judge and win rate are defaults only on builtin:tldr (they read its columns);
        on other data `rewards` must be named and `eval_rewards` defaults to none."""
        on_tldr = self.dataset == TLDR_DATASET
        if self.eval_rewards is None:
            self.eval_rewards = list(TLDR_EVAL_REWARDS) if on_tldr else []
        if self.rewards is None and on_tldr:
            self.rewards = list(TLDR_REWARDS)
        if self.environment is not None:  # an episode's return is a score of its own
            self.rewards = self.rewards or []
        if not self.rewards and self.environment is None:
            raise ConfigError(
                f"no reward to evaluate with on {self.dataset}: give --rewards (a builtin such as "
                "length, module:fn, file.py:fn or model:PATH); the TL;DR judge is the default only "
                f"for --dataset {TLDR_DATASET}"
            )


def load_eval_policy(model: str, reference: str | None, *, temperature: float, max_new_tokens: int,
                     max_prompt_length: int, device: str = "cpu"):
    """A `CausalLMPolicy` for a saved model (a full model, or a LoRA adapter whose base is the
    default reference) with pi_ref loaded from `reference`; ModelError when either cannot load."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..policies.causal_lm.policy import CausalLMPolicy
    from ..models.pretrained import model_load_errors, resolve_model_path

    # A LoRA adapter (what `rebel train` writes to final/ by default) has adapter_config.json and
    # no config.json.
    is_adapter = (Path(model).expanduser() / "adapter_config.json").is_file()
    path = str(Path(model).expanduser()) if is_adapter else resolve_model_path(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        if is_adapter:
            from peft import AutoPeftModelForCausalLM

            policy_model = AutoPeftModelForCausalLM.from_pretrained(path)
        else:
            policy_model = AutoModelForCausalLM.from_pretrained(path)
        reference_model = None
        if reference is not None:
            reference_model = AutoModelForCausalLM.from_pretrained(resolve_model_path(reference))
        elif not is_adapter:
            raise ModelError(f"{model} is a full model: give reference_model (e.g. the SFT model) "
                             "for the KL term")
    except model_load_errors() as exc:
        raise ModelError(f"cannot load {model!r} or its reference: {first_line(exc)}") from None
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    for m in (policy_model, reference_model):
        if m is not None:
            m.to(device).eval().requires_grad_(False)
    return CausalLMPolicy(policy_model, tokenizer, max_new_tokens=max_new_tokens,
                          temperature=temperature, max_prompt_length=max_prompt_length,
                          reference_model=reference_model)


def evaluate_model(config: EvaluateConfig) -> dict[str, Any]:
    """Evaluate `config.model_name_or_path` as `EvaluateConfig` says; return the result, a dict."""
    from ..data import load_prompt_dataset
    from ..rewards import RewardSet, check_reward_spec
    from ..rewards.preferences import NoRewards
    from .heldout import Episodes, evaluate
    from ..training.run.outputs import write_json

    config = config.validate()
    for spec in [*config.rewards, *config.eval_rewards]:
        check_reward_spec(spec)
    dataset = load_prompt_dataset(config.dataset, config.split, config.prompt_column)
    if config.num_prompts:
        dataset = dataset.select(range(min(config.num_prompts, len(dataset))))
    policy = load_eval_policy(config.model_name_or_path, config.reference_model,
                              temperature=config.kl_temperature,
                              max_new_tokens=config.max_new_tokens,
                              max_prompt_length=config.max_prompt_length)
    policy.check_prompts(dataset["prompt"])
    episodes = None
    if config.environment is not None:
        from ..environments import EnvironmentFactory

        episodes = Episodes(EnvironmentFactory(config.environment, config.step_timeout),
                            config.max_turns, config.max_total_tokens)
    rewards = RewardSet(config.rewards) if config.rewards else NoRewards()  # episodes alone
    result = evaluate(policy, dataset, rewards,
                      eval_reward_set=(RewardSet(config.eval_rewards) if config.eval_rewards
                                       else None),
                      num_generations=config.num_generations, temperature=config.temperature,
                      batch_size=config.batch_size, seed=config.seed, episodes=episodes)
    summary = {"model": config.model_name_or_path, "dataset": config.dataset, "split": config.split,
               "num_prompts": len(dataset), **result.to_dict()}
    if config.output:
        Path(config.output).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(config.output), summary)
    return summary


def result_lines(data: dict[str, Any]) -> list[str]:
    """One line per metric of an `evaluate_model` result, `name: mean +/- s.e.`, for printing."""
    lines = [f"reward: {data['reward']:+.4f} +/- {data['reward_se']:.4f}",
             f"kl: {data['kl']:.4f} +/- {data['kl_se']:.4f}"]
    lines += [f"{name}: {value:+.4f} +/- {data['rewards_se'].get(name, 0.0):.4f}"
              for name, value in data["rewards"].items()]
    lines += [f"mean_length: {data['mean_length']:.2f}",
              f"no_eos_fraction: {data['no_eos_fraction']:.3f}"]
    lines += [f"{name}: {data[name]:.4f}" for name in ("episode_return", "success_rate",
                                                        "mean_turns") if data.get(name) is not None]
    lines += [f"return/{metric}: {value:.4f}"  # pass@k of a 0/1 episode return
              for metric, value in data["verified"].get("return", {}).items()]
    return lines
