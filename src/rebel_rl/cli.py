"""The `rebel` command line: `rebel train [--config x.yaml] [--FIELD VALUE ...] [--resume RUN_DIR]`,
its image twin `rebel train-images` (defaults: the offline digits demo), and the stages around it:
`rebel sft`, `rebel reward-model`, `rebel preference-model`, `rebel dpo`, `rebel evaluate`, `rebel
compare`.

Every field of a stage's config dataclass is a `--FIELD` option; values given on the command line
override the YAML file, which overrides the defaults. Bad input prints one `error:` line and exits
with code 2.
"""
from __future__ import annotations

import argparse
import sys
import typing
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
    "sft": (SFTConfig, "supervised fine-tuning on prompt-completion data "
                       "(from a checkpoint or scratch:small)"),
    "reward-model": (RewardModelConfig, "train a Bradley-Terry reward model on preference pairs"),
    "preference-model": (PreferenceModelConfig,
                         "train a pairwise preference model P(a > b | x) on preference pairs"),
    "dpo": (DPOConfig, "offline DPO on preference pairs against a frozen reference"),
    "evaluate": (EvaluateConfig,
                 "win rate, reward and KL(pi || pi_ref) of a saved policy, with standard errors"),
    "compare": (CompareConfig,
                "the paper's TL;DR table: every algorithm x seeds on the built-in task"),
}


def field_help(cls: type = RebelConfig) -> dict[str, str]:
    """Each config option's help, by its `--` name (the `option(...)` help of its dataclass field,
    config/base.py): the one place options are documented."""
    return cls.field_help()


def add_config_options(parser: argparse.ArgumentParser, cls: type = RebelConfig,
                       defaults: Any = None) -> None:
    """One `--FIELD VALUE` option per option of the config class `cls` (absent = not overridden); a
    name that two groups of a grouped config share is `--group.FIELD`, and also `--FIELD` (the
    chosen algorithm's group) when the groups are algorithms'. Deprecated names are accepted,
    unlisted. `defaults` (a `cls` instance) is what --help shows as defaults."""
    helps = field_help(cls)
    defaults = cls() if defaults is None else defaults
    for name, f, owner in cls.option_fields():
        flag = cls.flag(name, owner)
        group = (flag.partition(".")[0] if "." in flag
                 else (cls.owners(name)[0] if hasattr(cls, "owners") else ""))
        default = getattr(getattr(defaults, group) if group else defaults, name)
        _add_option(parser, flag, typing.get_type_hints(owner)[name],
                    f"{helps.get(flag, '')} (default: {default!r})")
    if not hasattr(cls, "shared_groups"):
        return
    for name in sorted(cls.shared_names()):
        owners = cls.owners(name)
        if set(owners) <= cls.shared_groups():
            hint = typing.get_type_hints(cls.groups()[owners[0]])[name]
            _add_option(parser, name, hint, f"the chosen algorithm's {name}: "
                        + ", ".join(f"{g}.{name}" for g in owners))
    for old, new in cls.renames().items():
        group, _, field_name = new.partition(".")
        _add_option(parser, old, typing.get_type_hints(cls.groups()[group])[field_name],
                    argparse.SUPPRESS)


def _add_option(parser: argparse.ArgumentParser, flag: str, hint: Any, help_text: str) -> None:
    """`--flag VALUE` (a bool may be bare, a list takes several values), absent = not overridden."""
    kwargs: dict[str, Any] = {"default": argparse.SUPPRESS, "metavar": "VALUE", "dest": flag,
                              "help": help_text}
    if hint is bool:
        kwargs.update(nargs="?", const="true")
    elif (typing.get_origin(hint) is list
          or list in [typing.get_origin(a) for a in typing.get_args(hint)]):
        kwargs.update(nargs="+")
    parser.add_argument(f"--{flag}", **kwargs)


ALL_COMMANDS = "*"  # build_parser(options_for=...): every subcommand gets its options


def add_new_schedule_option(parser: argparse.ArgumentParser) -> None:
    """`--new_lr_schedule`: with --resume, accept the learning-rate schedule of changed options."""
    parser.add_argument("--new_lr_schedule", action="store_true",
                        help="with --resume and options that change the learning-rate schedule "
                             "(num_iterations, lr_scheduler, warmup_ratio, learning_rate): "
                             "continue on the schedule the new options define (as if the run had "
                             "started with them) instead of refusing")


def build_parser(options_for: str | None = ALL_COMMANDS) -> argparse.ArgumentParser:
    """The `rebel` parser. Each subcommand's `--FIELD` options (read from the config dataclasses'
    source, the slow part) are added for `options_for` only (default: every subcommand; None: none,
    which is all `rebel --help` and a missing or unknown command need)."""

    def wanted(name: str) -> bool:
        return options_for in (ALL_COMMANDS, name)

    parser = argparse.ArgumentParser(
        prog="rebel", description="REBEL reinforcement learning for Hugging Face models.",
        allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser(
        "train", allow_abbrev=False,
        help="fine-tune a causal LM with REBEL (no arguments: the offline SmolLM2 sentiment demo)",
        description="Fine-tune a causal LM with REBEL. With no arguments, runs the embedded "
                    "default: LoRA on SmolLM2-135M-Instruct (offline), made more positive under a "
                    "KL penalty.",
    )
    train.add_argument("--config", metavar="YAML", help="a YAML file of `field: value` lines")
    train.add_argument("--resume", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR from its latest checkpoint")
    add_new_schedule_option(train)
    if wanted("train"):
        add_config_options(train)
    images = commands.add_parser(
        "train-images", allow_abbrev=False,
        help="fine-tune a diffusion model with REBEL "
             "(no arguments: the offline handwritten-digits demo)",
        description="Fine-tune a diffusion model with REBEL (or --algorithm ddpo). With no "
                    f"arguments, runs the embedded image demo (builtin:{IMAGE_DEMO}: the built-in "
                    "digits denoiser, sampled without guidance, learns to draw digits a classifier "
                    "recognises; see docs/images.md). Options override the demo's values; --config "
                    "YAML overrides them too.",
    )
    images.add_argument("--config", metavar="YAML",
                        help="a YAML file of `field: value` lines, over the demo's")
    images.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR from its latest checkpoint")
    add_new_schedule_option(images)
    if wanted("train-images"):
        add_config_options(images, defaults=image_demo_config())
    recipes = commands.add_parser("recipes", allow_abbrev=False,
                                  help="list the packaged recipes (--config builtin:NAME)",
                                  description="List the packaged recipes; with --accelerate NAME, "
                                              "print the path of a packaged accelerate config "
                                              "(fsdp2_8gpu, deepspeed_zero2_8gpu).")
    recipes.add_argument("--accelerate", metavar="NAME",
                         help="print the path of this packaged accelerate config")
    push = commands.add_parser("push", allow_abbrev=False,
                               help="upload a finished run to the Hugging Face Hub",
                               description="Upload a finished run's final/ model (adapter or "
                                           "merged), tokenizer, plot and a generated model card to "
                                           "the Hub.")
    push.add_argument("run_dir", metavar="RUN_DIR")
    push.add_argument("--hub_model_id", metavar="ID",
                      help="the Hub repository (default: the run's hub_model_id)")
    push.add_argument("--private", action="store_true", default=None,
                      help="create the repository as private")
    push.add_argument("--to_folder", metavar="DIR",
                      help="only write what would be uploaded into DIR (no network)")
    serve = commands.add_parser(
        "vllm-serve", allow_abbrev=False,
        help="serve a model with vLLM for generation_backend vllm_server",
        description="Start a vLLM server for a model folder: runs with generation_backend "
                    "vllm_server and vllm_server_url http://HOST:PORT sample from it and send it "
                    "their weights after each update (docs/vllm.md).")
    serve.add_argument("--model", required=True, metavar="PATH",
                       help="the model folder (the run's model)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    serve.add_argument("--dtype", default="float32",
                       help="the engine's dtype: the trainer's (default float32)")
    serve.add_argument("--kv_cache_gb", type=float, default=2.0,
                       help="on a CPU: KV-cache GiB (default 2)")
    serve.add_argument("--gpu_memory_utilization", type=float, default=0.9,
                       help="on a GPU: the fraction of its memory the engine takes (default 0.9)")
    serve.add_argument("--max_model_len", type=int, default=None,
                       help="tokens per sequence (default: the model's context)")
    for name, (cls, summary) in STAGES.items():
        stage = commands.add_parser(name, allow_abbrev=False, help=summary,
                                    description=summary[0].upper() + summary[1:] + ".")
        stage.add_argument("--config", metavar="YAML", help="a YAML file of `field: value` lines")
        if wanted(name):
            add_config_options(stage, cls)
    return parser


def _run_train(args: argparse.Namespace) -> int:
    overrides = stage_overrides(args, "resume", "new_lr_schedule")
    if args.new_lr_schedule and not args.resume:
        raise RebelError("--new_lr_schedule goes with --resume RUN_DIR: a new run starts on its "
                         "own schedule")
    if args.resume:
        if args.config:
            raise RebelError("--resume takes the config saved in the run directory: drop --config")
        args.run_dir = args.resume
        start_work()
        from .training.online.loop import resume

        resume(args.resume, new_lr_schedule=args.new_lr_schedule, **overrides)
        return 0
    config = RebelConfig.from_yaml(args.config) if args.config else RebelConfig()
    return _train(args, config.with_overrides(overrides).validate())


def _train(args: argparse.Namespace, config: RebelConfig) -> int:
    """Train the validated `config`; the heavy libraries load only now (config errors came first).
    """
    args.run_dir = config.output_dir
    _check_missing_model(config)
    _check_rewards_and_data(config)
    start_work()
    from .training.online.loop import RebelTrainer

    RebelTrainer(config).train()
    return 0


def _check_missing_model(config: RebelConfig) -> None:
    """A model source that is neither a file nor built in can only be a causal LM (a diffusion hub
    id needs model_type diffusion): its missing path or unreachable hub id is reported before
    seconds of imports. The trainer checks every source again (policies/factory.py)."""
    from pathlib import Path

    from .models.pretrained import check_model_source

    name = config.model_name_or_path
    if (config.model_type != "diffusion" and not name.startswith("builtin:")
            and not Path(name).expanduser().exists()):
        check_model_source(name)


def _check_rewards_and_data(config: RebelConfig) -> None:
    """Reward specs, then local dataset paths, in the trainer's order, before seconds of imports
    (the trainer checks them again)."""
    from .data.prompts import check_dataset_source
    from .rewards.specs import check_reward_spec

    for spec in [*config.rewards, *config.eval_rewards]:
        check_reward_spec(spec)
    for source in [config.dataset, config.eval_dataset]:
        if source is not None:
            check_dataset_source(source)


def image_demo_config() -> RebelConfig:
    """The embedded image demo's config: RebelConfig with the packaged recipe's values."""
    return RebelConfig.from_yaml(f"builtin:{IMAGE_DEMO}")


def _run_train_images(args: argparse.Namespace) -> int:
    overrides = stage_overrides(args, "resume", "new_lr_schedule")
    if args.resume:
        return _run_train(args)
    config = image_demo_config()
    if args.config:
        # only the keys it sets
        config = config.with_overrides(read_yaml(args.config), source=args.config)
    return _train(args, config.with_overrides(overrides).validate())


def stage_overrides(args: argparse.Namespace, *skip: str) -> dict[str, Any]:
    """The `--FIELD VALUE` options given on the command line (argparse drops the absent ones)."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip)}


def run_stage(args: argparse.Namespace, cls: type, run: Any) -> int:
    """Build config `cls` from `--config` and the options, validate it, and call `run(config)`."""
    config = cls.from_yaml(args.config) if args.config else cls()
    config = config.with_overrides(stage_overrides(args)).validate()
    args.run_dir = getattr(config, "output_dir", None)
    start_work()
    run(config)
    return 0


def _run_sft(args: argparse.Namespace) -> int:
    return run_stage(args, SFTConfig, _stage(".training.offline.sft", "sft"))


def _run_reward_model(args: argparse.Namespace) -> int:
    return run_stage(args, RewardModelConfig, _stage(".training.offline.reward_model",
                                                     "train_reward_model"))


def _run_preference_model(args: argparse.Namespace) -> int:
    return run_stage(args, PreferenceModelConfig, _stage(".training.offline.preference_model",
                                                         "train_preference_model"))


def _run_dpo(args: argparse.Namespace) -> int:
    return run_stage(args, DPOConfig, _stage(".training.offline.offline_dpo", "dpo"))


def _stage(module: str, name: str) -> Any:
    """`run(config)` calling function `name` of stage module `module`, imported when the stage
    starts (after its config is checked)."""
    import importlib

    return lambda config: getattr(importlib.import_module(module, __package__), name)(config)


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
    print("accelerate configs: rebel recipes --accelerate fsdp2 | deepspeed_zero2 "
          "(docs/recipes.md)")
    return 0


def _run_push(args: argparse.Namespace) -> int:
    from .training.run.hub import push

    print(push(args.run_dir, args.hub_model_id, private=args.private, to_folder=args.to_folder))
    return 0


def _run_vllm_serve(args: argparse.Namespace) -> int:
    start_work()  # before torch and vLLM load: their logs read the levels it sets
    from .policies.causal_lm.vllm.serve_app import serve

    serve(args.model, args.host, args.port, args.dtype, args.kv_cache_gb,
          args.gpu_memory_utilization, args.max_model_len)
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
    "vllm-serve": _run_vllm_serve,
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `rebel` console script; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    # Options only for the subcommand given (the first word that names one): `rebel --help` and the
    # command's own help or errors do not pay for the other subcommands' options.
    command = next((word for word in argv if word in RUNNERS), None)
    args = build_parser(options_for=command).parse_args(argv)
    try:
        return RUNNERS[args.command](args)
    except RebelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_line(args), file=sys.stderr)
        return 130


def interrupted_line(args: argparse.Namespace) -> str:
    """What Ctrl-C prints: where the run is and how to continue it (train), or what was kept
    (stages)."""
    run_dir = getattr(args, "run_dir", None)
    if args.command not in ("train", "train-images"):
        return f"interrupted: {run_dir} may be incomplete" if run_dir else "interrupted"
    if run_dir is None:
        return "interrupted before the run started: nothing was written"
    return (f"interrupted: {run_dir} keeps its last complete checkpoint; continue with "
            f"rebel {args.command} --resume {run_dir}")


def start_work() -> None:
    """Called once the command line and config are checked, right before the heavy libraries load:
    quiet them (their warnings and progress bars would crowd the terminal and the one `error:`
    line)."""
    quiet_libraries()


if __name__ == "__main__":
    sys.exit(main())
