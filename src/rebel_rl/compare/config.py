"""Options of `rebel compare`: which algorithms, seeds and model size; the shared RL budget."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ..config import ConfigBase, _check_choice
from ..config.base import option
from ..config.algorithms import algorithm_names, algorithm_spec
from ..errors import ConfigError
from ..training.online import methods as _methods  # noqa: F401 (registers the online algorithms)
from .extensions import EXTENSIONS

# The offline stages compare runs beside the online algorithms (training/offline/): not registered.
OFFLINE = ["sft", "dpo"]
COMPARED_KIND = "causal_lm"  # the TL;DR task trains text policies: diffusion-only ones sit out


def online_methods() -> list[str]:
    """The registered online algorithms that train a causal LM, in registration order: compare's
    online rows (read when asked, so an algorithm registered later appears with no edit here);
    one that needs an environment (REFUEL) sits out the single-turn task."""
    return [name for name in algorithm_names()
            if COMPARED_KIND in algorithm_spec(name).policy_kinds
            and algorithm_spec(name).rollout != "branched"]


def methods() -> list[str]:
    """The default rows of `rebel compare`: the offline stages, then every online algorithm."""
    return OFFLINE + online_methods()


def all_methods() -> list[str]:
    """Every method compare can run: `methods()` and REBEL's extensions (extensions.py), which run
    only when named."""
    return methods() + list(EXTENSIONS)


@dataclass
class CompareConfig(ConfigBase):
    """Options of `rebel compare`. Each field's `option(...)` help is the reference docs."""

    command = "compare"

    model_size: str = option("small", "scratch model trained by SFT: small | medium")
    algorithms: list[str] = option(
        help="rows of the table (sft, dpo and online algorithms; REBEL's extensions rebel_hybrid "
        "etc.: compare/extensions.py)",
        factory=methods,
    )
    seeds: list[int] = option(
        help="one run per algorithm and seed (SFT and the reward model are shared)",
        factory=lambda: [0, 1, 2, 3, 4],
    )
    workers: int = option(
        2,
        "runs in parallel, each in its own process with cores / workers threads",
    )
    output_dir: str | None = option(None, "runs, logs and results; default runs/compare-SIZE")
    report_dir: str | None = option(
        None,
        "where results.md and its plots go (default: output_dir); the committed table uses docs",
    )
    report_section: str = option(
        "main",
        "the section of results.md this invocation writes (between <!-- compare:NAME --> markers); "
        "others are kept",
    )
    sft_model: str | None = option(
        None,
        "use this SFT checkpoint instead of training one (it must share the reward model's "
        "tokenizer)",
    )
    reward_model: str | None = option(
        None,
        "use this reward-model folder instead of training one from the SFT model",
    )
    sweep: bool = option(
        False,
        "instead of the grid: the validation sweep, learning rate x each method's knob (writes "
        "tuning.md and tuned.json)",
    )
    study: bool = option(
        False,
        "the whole study in one command: the sweep, then the table with its choice, then the "
        "frontier",
    )
    sweep_size: int = option(
        2,
        "coarse values per sweep axis: 2 (the reduced default) or 3 (the full grid)",
    )
    sweep_refine: int = option(
        2,
        "fine-grid cells run around each method's best coarse cell (the full study: 4)",
    )
    frontier_kl_coefs: list[float] = option(
        help="reward-vs-KL frontier: kl_coef values beside kl_coef's (empty: no frontier)",
        factory=lambda: [0.01, 0.2],
    )
    frontier_seeds: list[int] = option(
        help="seeds of the frontier's extra runs (the full study: 0 1 2 3 4)",
        factory=lambda: [0],
    )
    # --- the shared budget of every online algorithm ---
    num_iterations: int = option(
        40,
        "iterations per run (equal reward queries: same prompts and samples per iteration)",
    )
    prompts_per_iteration: int = option(32, "prompts per iteration")
    num_generations: int = option(
        2,
        "samples per prompt (REBEL, RLOO and iterative DPO compare them; PPO and REINFORCE use "
        "each)",
    )
    temperature: float = option(1.0, "training sampling temperature (KL is measured at it)")
    kl_coef: float = option(0.05, "reward = RM score - kl_coef * KL(pi_t || pi_sft)")
    max_new_tokens: int = option(
        24,
        "summary length cap (a summary without EOS gets missing_eos_penalty)",
    )
    missing_eos_penalty: float = option(
        1.0,
        "subtracted from the reward of a summary that never ends",
    )
    # --- evaluation ---
    eval_every: int = option(5, "iterations between validation evaluations (the learning curves)")
    eval_prompts: int = option(64, "validation prompts per curve point")
    test_prompts: int = option(
        200,
        "posts of the final evaluation (test split; the sweep uses validation)",
    )
    eval_samples: int = option(
        4,
        "summaries per post in the final evaluation (the 0.01-temperature one uses 1)",
    )
    eval_temperature: float = option(
        1.0,
        "temperature of the scored summaries (the training one; see docs/results.md)",
    )
    paper_temperature: float = option(
        0.01,
        "the test table also reports win rate at this temperature (the paper's 0.01)",
    )

    def validate(self) -> "CompareConfig":
        if self.output_dir is None:
            self.output_dir = f"runs/compare-{self.model_size}"
        if self.report_dir is None:
            self.report_dir = self.output_dir
        _check_choice("model_size", self.model_size, ["small", "medium"])
        known = all_methods()
        unknown = [a for a in self.algorithms if a not in known]
        if unknown or not self.algorithms:
            raise ConfigError(f"algorithms must be among {', '.join(known)}; "
                              f"got {', '.join(unknown) or 'none'}")
        if not self.report_section.replace("_", "").replace("-", "").isalnum():
            raise ConfigError(
                f"report_section must be a name of letters, digits, - and _; got "
                f"{self.report_section!r}"
            )
        if not self.seeds or not self.frontier_seeds:
            raise ConfigError(
                "seeds and frontier_seeds must not be empty: give at least one seed, e.g. --seeds 0"
            )
        if self.sweep_size not in (2, 3) or self.sweep_refine < 0:
            raise ConfigError(
                f"sweep_size must be 2 or 3 and sweep_refine >= 0; got {self.sweep_size}, "
                f"{self.sweep_refine}"
            )
        if any(k < 0 for k in self.frontier_kl_coefs):
            raise ConfigError("frontier_kl_coefs must be >= 0")
        for name in [
            "workers",
            "num_iterations",
            "prompts_per_iteration",
            "max_new_tokens",
            "eval_every",
            "eval_prompts",
            "test_prompts",
            "eval_samples",
        ]:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_generations < 2:
            raise ConfigError(
                "num_generations must be >= 2: REBEL, RLOO and iterative DPO compare samples"
            )
        for name in ["temperature", "eval_temperature", "paper_temperature"]:
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.kl_coef < 0 or self.missing_eos_penalty < 0:
            raise ConfigError("kl_coef and missing_eos_penalty must be >= 0")
        return self


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M")
