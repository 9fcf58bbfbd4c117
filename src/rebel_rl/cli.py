"""The `rebel` command line: `rebel train [--config x.yaml] [--FIELD VALUE ...] [--resume RUN_DIR]`, its image
twin `rebel train-images` (defaults: the offline digits demo), and the stages around it: `rebel sft`,
`rebel reward-model`, `rebel preference-model`, `rebel dpo`, `rebel evaluate`, `rebel compare`.

Every field of a stage's config dataclass is a `--FIELD` option; values given on the command line override the YAML
file, which overrides the defaults. Bad input prints one `error:` line and exits with code 2.
"""
from __future__ import annotations

import argparse
import sys
import typing
from collections import Counter
from typing import Any

from .config import RebelConfig, read_yaml
from .errors import RebelError
from .logs import quiet_libraries
from .compare.config import CompareConfig
from .evaluation.model_eval import EvaluateConfig
from .stage_configs import DPOConfig, PreferenceModelConfig, RewardModelConfig, SFTConfig

IMAGE_DEMO = "images_digits"  # the packaged recipe (rebel_rl/configs/) behind `rebel train-images`

# The stages before and beside RL (docs/pipeline.md): subcommand -> (config class, one-line help).
STAGES: dict[str, tuple[type, str]] = {
    "sft": (SFTConfig, "supervised fine-tuning on prompt-completion data (from a checkpoint or scratch:small)"),
    "reward-model": (RewardModelConfig, "train a Bradley-Terry reward model on preference pairs"),
    "preference-model": (PreferenceModelConfig, "train a pairwise preference model P(a > b | x) on preference pairs"),
    "dpo": (DPOConfig, "offline DPO on preference pairs against a frozen reference"),
    "evaluate": (EvaluateConfig, "win rate, reward and KL(pi || pi_ref) of a saved policy, with standard errors"),
    "compare": (CompareConfig, "the paper's TL;DR table: every algorithm x seeds on the built-in task"),
}


def field_help(cls: type = RebelConfig) -> dict[str, str]:
    """Each config option's trailing `# comment` in its dataclass (config/base.py): the one place options
    are documented."""
    return cls.field_comments()


def add_config_options(parser: argparse.ArgumentParser, cls: type = RebelConfig, defaults: Any = None) -> None:
    """One `--FIELD VALUE` option per option of the config class `cls` (absent = not overridden); a name
    that two groups of a grouped config share is `--group.FIELD` instead. `defaults` (a `cls` instance)
    is what --help shows as defaults."""
    helps = field_help(cls)
    defaults = cls() if defaults is None else defaults
    options = cls.option_fields()
    counts = Counter(name for name, _, _ in options)
    for name, f, owner in options:
        hint = typing.get_type_hints(owner)[name]
        flag = name if counts[name] == 1 else f"{_group_of(cls, owner)}.{name}"
        default = getattr(defaults, name) if counts[name] == 1 else getattr(getattr(defaults, flag.split(".")[0]), name)
        kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "metavar": "VALUE", "dest": flag,
                                  "help": f"{helps.get(name, '')} (default: {default!r})"}
        if hint is bool:
            kwargs.update(nargs="?", const="true")
        elif typing.get_origin(hint) is list or list in [typing.get_origin(a) for a in typing.get_args(hint)]:
            kwargs.update(nargs="+")
        parser.add_argument(f"--{flag}", **kwargs)


def _group_of(cls: type, owner: type) -> str:
    """The name of the group of grouped config `cls` whose dataclass is `owner`."""
    return next(name for name, group in cls.groups().items() if group is owner)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rebel", description="REBEL reinforcement learning for Hugging Face models.",
                                     allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", allow_abbrev=False, help="fine-tune a causal LM with REBEL (no arguments: the offline SmolLM2 sentiment demo)",
        description="Fine-tune a causal LM with REBEL. With no arguments, runs the embedded default: LoRA on "
                    "SmolLM2-135M-Instruct (offline), made more positive under a KL penalty.",
    )
    train.add_argument("--config", metavar="YAML", help="a YAML file of `field: value` lines")
    train.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    add_config_options(train)
    images = commands.add_parser(
        "train-images", allow_abbrev=False,
        help="fine-tune a diffusion model with REBEL (no arguments: the offline handwritten-digits demo)",
        description="Fine-tune a diffusion model with REBEL (or --algorithm ddpo). With no arguments, runs the "
                    f"embedded image demo (builtin:{IMAGE_DEMO}: the built-in digits denoiser, sampled without "
                    "guidance, learns to draw digits a classifier recognises; see docs/images.md). Options "
                    "override the demo's values; --config YAML overrides them too.",
    )
    images.add_argument("--config", metavar="YAML", help="a YAML file of `field: value` lines, over the demo's")
    images.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its latest checkpoint")
    add_config_options(images, defaults=image_demo_config())
    recipes = commands.add_parser("recipes", allow_abbrev=False, help="list the packaged recipes (--config builtin:NAME)",
                                  description="List the packaged recipes; with --accelerate NAME, print the path of "
                                              "a packaged accelerate config (fsdp2_8gpu, deepspeed_zero2_8gpu).")
    recipes.add_argument("--accelerate", metavar="NAME", help="print the path of this packaged accelerate config")
    push = commands.add_parser("push", allow_abbrev=False, help="upload a finished run to the Hugging Face Hub",
                               description="Upload a finished run's final/ model (adapter or merged), tokenizer, "
                                           "plot and a generated model card to the Hub.")
    push.add_argument("run_dir", metavar="RUN_DIR")
    push.add_argument("--hub_model_id", metavar="ID", help="the Hub repository (default: the run's hub_model_id)")
    push.add_argument("--private", action="store_true", default=None, help="create the repository as private")
    push.add_argument("--to_folder", metavar="DIR", help="only write what would be uploaded into DIR (no network)")
    for name, (cls, summary) in STAGES.items():
        stage = commands.add_parser(name, allow_abbrev=False, help=summary,
                                    description=summary[0].upper() + summary[1:] + ".")
        stage.add_argument("--config", metavar="YAML", help="a YAML file of `field: value` lines")
        add_config_options(stage, cls)
    return parser


def _run_train(args: argparse.Namespace) -> int:
    overrides = stage_overrides(args, "resume")
    from .training.online.loop import RebelTrainer, resume

    if args.resume:
        if args.config:
            raise RebelError("--resume takes the config saved in the run directory: drop --config")
        resume(args.resume, **overrides)
        return 0
    config = RebelConfig.from_yaml(args.config) if args.config else RebelConfig()
    config = config.with_overrides(overrides).validate()
    RebelTrainer(config).train()
    return 0


def image_demo_config() -> RebelConfig:
    """The embedded image demo's config: RebelConfig with the packaged recipe's values."""
    return RebelConfig.from_yaml(f"builtin:{IMAGE_DEMO}")


def _run_train_images(args: argparse.Namespace) -> int:
    overrides = stage_overrides(args, "resume")
    if args.resume:
        return _run_train(args)
    config = image_demo_config()
    if args.config:
        config = config.with_overrides(read_yaml(args.config), source=args.config)  # only the keys it sets
    from .training.online.loop import RebelTrainer

    RebelTrainer(config.with_overrides(overrides).validate()).train()
    return 0


def stage_overrides(args: argparse.Namespace, *skip: str) -> dict[str, Any]:
    """The `--FIELD VALUE` options given on the command line (argparse drops the absent ones)."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip)}


def run_stage(args: argparse.Namespace, cls: type, run: Any) -> int:
    """Build config `cls` from `--config` and the options, validate it, and call `run(config)`."""
    config = cls.from_yaml(args.config) if args.config else cls()
    run(config.with_overrides(stage_overrides(args)).validate())
    return 0


def _run_sft(args: argparse.Namespace) -> int:
    from .training.offline.sft import sft

    return run_stage(args, SFTConfig, sft)


def _run_reward_model(args: argparse.Namespace) -> int:
    from .training.offline.reward_model import train_reward_model

    return run_stage(args, RewardModelConfig, train_reward_model)


def _run_preference_model(args: argparse.Namespace) -> int:
    from .training.offline.preference_model import train_preference_model

    return run_stage(args, PreferenceModelConfig, train_preference_model)


def _run_dpo(args: argparse.Namespace) -> int:
    from .training.offline.offline_dpo import dpo

    return run_stage(args, DPOConfig, dpo)


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluation.model_eval import evaluate_model, result_lines

    def run(config: EvaluateConfig) -> None:
        print("\n".join(result_lines(evaluate_model(config))))

    return run_stage(args, EvaluateConfig, run)


def _run_compare(args: argparse.Namespace) -> int:
    from .compare import compare

    def run(config: CompareConfig) -> None:
        print(f"report: {compare(config)['report']}")

    return run_stage(args, CompareConfig, run)


def _run_recipes(args: argparse.Namespace) -> int:
    from .config import packaged_accelerate_config, packaged_recipes

    if args.accelerate:
        print(packaged_accelerate_config(args.accelerate))
        return 0
    for name, summary in packaged_recipes().items():
        print(f"{name:28} {summary}")
    print("accelerate configs: rebel recipes --accelerate fsdp2 | deepspeed_zero2 (docs/recipes.md)")
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from .training.run.hub import push

    print(push(args.run_dir, args.hub_model_id, private=args.private, to_folder=args.to_folder))
    return 0


# subcommand -> function(args) -> exit code; each stage registers its parser in build_parser.
RUNNERS: dict[str, Any] = {
    "train": _run_train,
    "train-images": _run_train_images,
    "sft": _run_sft,
    "reward-model": _run_reward_model,
    "preference-model": _run_preference_model,
    "dpo": _run_dpo,
    "evaluate": _run_evaluate,
    "compare": _run_compare,
    "recipes": _run_recipes,
    "push": _run_push,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rebel` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    quiet_libraries()
    try:
        return RUNNERS[args.command](args)
    except RebelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last complete checkpoint is kept; continue with --resume RUN_DIR", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
