"""RebelConfig: YAML files, type conversion, `--field value` overrides and validation (one ConfigError line each)."""

import pytest
import yaml

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.config import config_fields


def write(tmp_path, text, name="run.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message, message
    return message


# ------------------------------------------------------------------ defaults and YAML files
def test_defaults_validate():
    config = RebelConfig().validate()
    assert config.output_dir is not None and config.output_dir.startswith("runs/rebel-")
    assert config.algorithm == "rebel" and config.num_generations >= 2


def test_from_yaml_good_file(tmp_path):
    path = write(tmp_path, """
model_name_or_path: some/model
use_lora: false
num_iterations: 7
learning_rate: 1e-4          # PyYAML reads this as a string; it must still become a float
kl_coef: 0.1
rewards: [length, sentiment]
reward_weights: [1, 0.5]
eval_dataset: prompts.jsonl
""")
    config = RebelConfig.from_yaml(path)
    assert config.model_name_or_path == "some/model"
    assert config.use_lora is False
    assert config.num_iterations == 7 and isinstance(config.num_iterations, int)
    assert config.learning_rate == 1e-4 and isinstance(config.learning_rate, float)
    assert config.kl_coef == 0.1
    assert config.rewards == ["length", "sentiment"]
    assert config.reward_weights == [1.0, 0.5] and all(isinstance(w, float) for w in config.reward_weights)
    assert config.eval_dataset == "prompts.jsonl"
    assert config.lora_r == RebelConfig().lora_r  # untouched fields keep their defaults
    config.validate()


def test_empty_yaml_gives_defaults(tmp_path):
    assert RebelConfig.from_yaml(write(tmp_path, "# nothing here\n")) == RebelConfig()


def test_unknown_key_names_the_key(tmp_path):
    path = write(tmp_path, "num_iterations: 3\nlearning_rte: 0.1\n")
    with pytest.raises(ConfigError) as info:
        RebelConfig.from_yaml(path)
    message = one_line(info)
    assert "'learning_rte'" in message and str(path) in message


def test_several_unknown_keys_are_all_named(tmp_path):
    with pytest.raises(ConfigError, match="keys 'foo', 'bar'"):
        RebelConfig.from_yaml(write(tmp_path, "foo: 1\nbar: 2\n"))


def test_malformed_yaml_gives_line(tmp_path):
    path = write(tmp_path, "num_iterations: 3\nrewards: [length\nseed: 1\n")
    with pytest.raises(ConfigError) as info:
        RebelConfig.from_yaml(path)
    message = one_line(info)
    assert "not valid YAML" in message and "line " in message and str(path) in message


def test_yaml_tab_indentation_error_gives_line(tmp_path):
    with pytest.raises(ConfigError, match=r"line 2"):
        RebelConfig.from_yaml(write(tmp_path, "num_iterations: 3\n\tseed: 1\n"))


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "list"), ("just a string\n", "str"), ("3\n", "int")])
def test_yaml_not_a_mapping(tmp_path, text, kind):
    with pytest.raises(ConfigError) as info:
        RebelConfig.from_yaml(write(tmp_path, text))
    assert "mapping" in one_line(info) and kind in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        RebelConfig.from_yaml(tmp_path / "nope.yaml")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        RebelConfig.from_yaml(tmp_path)


# ------------------------------------------------------------------ type conversion
@pytest.mark.parametrize("line, field", [
    ("num_iterations: abc", "num_iterations"),
    ("num_iterations: 2.5", "num_iterations"),
    ("num_iterations: true", "num_iterations"),
    ("use_lora: maybe", "use_lora"),
    ("use_lora: 2", "use_lora"),
    ("learning_rate: fast", "learning_rate"),
    ("kl_coef: [0.1]", "kl_coef"),
    ("dataset: {a: 1}", "dataset"),
    ("rewards: 3", "rewards"),
    ("reward_weights: [1, heavy]", "reward_weights"),
    ("eval_temperature: hot", "eval_temperature"),
])
def test_wrong_types_name_the_field(tmp_path, line, field):
    path = write(tmp_path, line + "\n")
    with pytest.raises(ConfigError) as info:
        RebelConfig.from_yaml(path)
    message = one_line(info)
    assert message.startswith(f"{field} in {path} must be"), message


def test_integral_float_is_accepted_for_int(tmp_path):
    assert RebelConfig.from_yaml(write(tmp_path, "num_iterations: 3.0\n")).num_iterations == 3


@pytest.mark.parametrize("value, expected", [("true", True), ("True", True), ("yes", True), ("1", True),
                                             ("false", False), ("no", False), ("0", False)])
def test_bool_strings(value, expected):
    assert RebelConfig().with_overrides({"use_lora": value}).use_lora is expected


def test_list_fields_from_comma_strings_and_lists(tmp_path):
    config = RebelConfig.from_yaml(write(tmp_path, 'rewards: "length,sentiment"\nreward_weights: "1, 2.5"\n'))
    assert config.rewards == ["length", "sentiment"]
    assert config.reward_weights == [1.0, 2.5]
    # Unquoted in YAML this is one string with a space after the comma: items are stripped.
    config = RebelConfig.from_yaml(write(tmp_path, "rewards: length, sentiment\n"))
    assert config.rewards == ["length", "sentiment"]
    config = RebelConfig.from_yaml(write(tmp_path, "rewards:\n  - length\n  - sentiment\nreward_weights: [2, 3]\n"))
    assert config.rewards == ["length", "sentiment"] and config.reward_weights == [2.0, 3.0]
    # A single value is a one-item list, from YAML and from the command line alike.
    assert RebelConfig.from_yaml(write(tmp_path, "rewards: length\n")).rewards == ["length"]
    assert RebelConfig().with_overrides({"rewards": ["length", "sentiment"]}).rewards == ["length", "sentiment"]
    # `--rewards length,sentiment` arrives from argparse as a one-item list: it is split the same way.
    assert RebelConfig().with_overrides({"rewards": ["length,sentiment"]}).rewards == ["length", "sentiment"]


@pytest.mark.parametrize("none", ["none", "None", "null", "~"])
def test_none_for_optional_fields(tmp_path, none):
    text = f"eval_dataset: {none}\nreward_weights: {none}\neval_temperature: {none}\noutput_dir: {none}\n"
    config = RebelConfig.from_yaml(write(tmp_path, text))
    assert config.eval_dataset is None and config.reward_weights is None
    assert config.eval_temperature is None and config.output_dir is None
    overridden = RebelConfig(eval_temperature=0.7, eval_dataset="x.jsonl").with_overrides(
        {"eval_temperature": "none", "eval_dataset": "None"})
    assert overridden.eval_temperature is None and overridden.eval_dataset is None


def test_none_is_a_plain_string_for_required_string_fields():
    # Only Optional fields take none; elsewhere "none" is an ordinary value (and fails later, loudly).
    assert RebelConfig().with_overrides({"dataset": "none"}).dataset == "none"


# ------------------------------------------------------------------ validation
def check_invalid(match, **values):
    with pytest.raises(ConfigError, match=match) as info:
        RebelConfig(**values).validate()
    one_line(info)


@pytest.mark.parametrize("values, match", [
    ({"num_generations": 1}, r"num_generations must be >= 2 for rebel"),
    ({"num_generations": 0}, r"num_generations must be >= 1"),
    ({"num_iterations": 0}, r"num_iterations must be >= 1, got 0"),
    ({"max_new_tokens": -3}, r"max_new_tokens must be >= 1"),
    ({"prompts_per_iteration": 10, "minibatch_prompts": 4},
     r"prompts_per_iteration \(10\) must be a multiple of minibatch_prompts \(4\)"),
    ({"prompts_per_iteration": 12, "minibatch_prompts": 4, "gradient_accumulation_steps": 2},
     r"gradient_accumulation_steps \(2\) must divide the number of minibatches per epoch \(3"),
    ({"dtype": "fp32"}, r"dtype must be one of auto, float32, bfloat16, float16; got 'fp32'"),
    ({"lr_scheduler": "step"}, r"lr_scheduler must be one of linear, cosine, constant; got 'step'"),
    ({"mixed_precision": "fp8"}, r"mixed_precision must be one of auto, no, bf16, fp16; got 'fp8'"),
    ({"algorithm": "dpo"}, r"algorithm must be one of rebel, ppo, rloo, reinforce, iterative_dpo, ddpo, grpo, apo"
                           r"[\w, ]*; got 'dpo'"),  # a new algorithm's name may follow
    ({"rewards": ["length", "sentiment"], "reward_weights": [1.0]},
     r"reward_weights has 1 values for 2 rewards"),
    ({"rewards": []}, r"rewards is empty"),
    ({"kl_coef": -0.1}, r"kl_coef must be >= 0, got -0.1"),
    ({"top_p": 0.0}, r"top_p must be in \(0, 1\], got 0.0"),
    ({"top_p": 1.5}, r"top_p must be in \(0, 1\], got 1.5"),
    ({"top_k": -1}, r"top_k must be >= 0"),
    ({"temperature": 0.0}, r"temperature must be > 0"),
    ({"eval_temperature": 0.0}, r"eval_temperature must be > 0"),
    ({"eta": -1.0}, r"eta must be > 0"),
    ({"learning_rate": 0.0}, r"learning_rate must be > 0"),
    ({"warmup_ratio": 1.0}, r"warmup_ratio must be in \[0, 1\)"),
    ({"save_every": -1}, r"save_every must be >= 0"),
    ({"eval_prompts": -1}, r"eval_prompts must be >= 0"),
    ({"kl_coef": float("nan")}, r"kl_coef must be a finite number, got nan"),
    ({"missing_eos_penalty": float("inf")}, r"missing_eos_penalty must be a finite number"),
    ({"rewards": ["length"], "reward_weights": [float("nan")]}, r"reward_weights must be a finite number"),
])
def test_validate_rules(values, match):
    check_invalid(match, **values)


def test_valid_edge_values_pass():
    RebelConfig(top_p=1.0, kl_coef=0.0, warmup_ratio=0.0, save_every=0, eval_prompts=0, top_k=0,
                prompts_per_iteration=12, minibatch_prompts=4, gradient_accumulation_steps=3,
                rewards=["length", "sentiment"], reward_weights=[1.0, -1.0]).validate()


def test_empty_rewards_allowed_when_the_api_supplies_callables():
    RebelConfig(rewards=[]).validate(require_rewards=False)


def test_nan_from_yaml_and_command_line_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="kl_coef must be a finite number"):
        RebelConfig.from_yaml(write(tmp_path, "kl_coef: .nan\n")).validate()
    with pytest.raises(ConfigError, match="learning_rate must be"):
        RebelConfig().with_overrides({"learning_rate": "nan"}).validate()


def test_validate_keeps_an_explicit_output_dir():
    assert RebelConfig(output_dir="here").validate().output_dir == "here"


# ------------------------------------------------------------------ overrides and round trips
def test_with_overrides_converts_and_does_not_mutate():
    base = RebelConfig()
    changed = base.with_overrides({"num_iterations": "5", "use_lora": "false", "learning_rate": "3e-4",
                                   "rewards": ["length"], "reward_weights": ["2"], "eval_temperature": "0.5"})
    assert changed.num_iterations == 5 and changed.use_lora is False and changed.learning_rate == 3e-4
    assert changed.rewards == ["length"] and changed.reward_weights == [2.0] and changed.eval_temperature == 0.5
    assert base == RebelConfig()  # the original is untouched
    assert changed.with_overrides({}) == changed
    back = changed.with_overrides({k: getattr(base, k) for k in ["num_iterations", "use_lora", "learning_rate",
                                                                 "rewards", "reward_weights", "eval_temperature"]})
    assert back == base


def test_with_overrides_rejects_unknown_and_bad_values():
    with pytest.raises(ConfigError, match=r"unknown config key 'bogus_field' in command line"):
        RebelConfig().with_overrides({"bogus_field": "1"})
    with pytest.raises(ConfigError, match=r"seed in command line must be int, got 'x'"):
        RebelConfig().with_overrides({"seed": "x"})


def test_save_yaml_round_trip(tmp_path):
    config = RebelConfig(model_name_or_path="m", use_lora=False, rewards=["length", "a/b.py:fn"],
                         reward_weights=[0.5, 2.0], eval_temperature=0.7, output_dir=str(tmp_path / "run"),
                         learning_rate=3e-5, lora_target_modules="q_proj,v_proj", seed=7)
    path = tmp_path / "saved.yaml"
    config.save_yaml(path)
    loaded = RebelConfig.from_yaml(path)
    assert loaded == config
    saved = yaml.safe_load(path.read_text())  # grouped by layer
    assert saved["reward"]["rewards"] == ["length", "a/b.py:fn"]
    # Every field is written, so the saved file fully describes the run.
    assert {name for group in saved.values() for name in group} == {f.name for f in config_fields()}
    default_path = tmp_path / "default.yaml"
    RebelConfig().save_yaml(default_path)
    assert RebelConfig.from_yaml(default_path) == RebelConfig()


# ------------------------------------------------------------------ groups
def test_flat_names_reach_their_group_and_each_group_validates_itself():
    config = RebelConfig(eta=0.5, ppo={"clip_range": 0.3}, learning_rate=1e-4, max_new_tokens=8)
    assert (config.rebel.eta, config.ppo.clip_range, config.training.learning_rate) == (0.5, 0.3, 1e-4)
    assert config.eta == 0.5 and config.sampling.max_new_tokens == 8
    config.sampling.top_p = 0.0  # a group alone reports its own problem
    with pytest.raises(ConfigError, match=r"top_p must be in \(0, 1\]"):
        config.sampling.validate()


def test_old_flat_yaml_nested_yaml_and_dotted_keys_load_the_same(tmp_path):
    flat = RebelConfig.from_yaml(write(tmp_path, "eta: 2.0\nseed: 3\nrewards: [length]\n"))
    nested = RebelConfig.from_yaml(write(tmp_path, "rebel: {eta: 2.0}\ntraining: {seed: 3}\nreward: {rewards: [length]}\n"))
    dotted = RebelConfig().with_overrides({"rebel.eta": "2", "training.seed": "3", "reward.rewards": "length"})
    assert flat == nested == dotted
    assert flat.eta == 2.0 and flat.seed == 3 and flat.rewards == ["length"]
    with pytest.raises(ConfigError, match="unknown config key 'ppo.eta'"):
        RebelConfig().with_overrides({"ppo.eta": 1})


def test_a_name_in_two_groups_must_name_its_group():
    from dataclasses import dataclass

    from rebel_rl.config import GroupedConfig

    @dataclass
    class First:
        clip: float = 0.1  # one

    @dataclass
    class Second:
        clip: float = 0.2  # two
        other: int = 0  # three

    class Toy(GroupedConfig):
        @classmethod
        def groups(cls):
            return {"first": First, "second": Second}

    with pytest.raises(ConfigError, match=r"clip in command line exists in groups first and second: write "
                                          r"first.clip or second.clip") as info:
        Toy().with_overrides({"clip": "0.5"})
    one_line(info)
    toy = Toy().with_overrides({"second.clip": "0.5", "other": "4"})
    assert (toy.first.clip, toy.second.clip, toy.other) == (0.1, 0.5, 4)


def test_a_name_algorithms_share_given_flat_sets_only_the_chosen_algorithms_group():
    """`clip_range` is ppo's, grpo's and ddpo's own: flat, it is the chosen algorithm's."""
    config = RebelConfig(clip_range=0.3, algorithm="grpo")  # the algorithm may come after it
    assert (config.ppo.clip_range, config.grpo.clip_range, config.ddpo.clip_range) == (0.2, 0.3, 0.2)
    config = RebelConfig().with_overrides({"clip_range": "0.4", "algorithm": "ppo"})
    assert (config.ppo.clip_range, config.grpo.clip_range, config.ddpo.clip_range) == (0.4, 0.2, 0.2)
    qualified = RebelConfig(ppo={"clip_range": 0.1}).with_overrides({"grpo.clip_range": 0.5})
    assert (qualified.ppo.clip_range, qualified.grpo.clip_range) == (0.1, 0.5)
    with pytest.raises(ConfigError, match="clip_range in command line is an option of ppo, ddpo, "
                                          "grpo, not of the chosen one: write ppo.clip_range or "):
        RebelConfig().with_overrides({"clip_range": "0.3"})  # rebel has none
    with pytest.raises(TypeError, match="clip_range in arguments is an option of ppo"):
        RebelConfig(clip_range=0.3)


def test_a_shared_name_has_one_reference_row_and_one_help_per_group():
    import importlib.util
    from pathlib import Path

    from rebel_rl.cli import field_help

    path = Path(__file__).resolve().parents[1] / "scripts" / "config_reference.py"
    spec = importlib.util.spec_from_file_location("config_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = [line.split("|")[1].strip() for line in module.config_table().splitlines()[2:]]
    assert [row for row in rows if "clip_range`" in row] == [
        "`ppo.clip_range`", "`ddpo.clip_range`", "`grpo.clip_range`"]
    assert len(rows) == len(set(rows))
    helps = field_help()
    assert (helps["ppo.clip_range"], helps["grpo.clip_range"]) == (
        "ppo: ratio clipping epsilon", "grpo: ratio clipping epsilon")
    assert "clip_range" not in helps and "epsilon" not in helps


@pytest.mark.parametrize("old, value, group, new", [
    ("epsilon", 0.1, "grpo", "clip_range"),
    ("grpo.epsilon", 0.1, "grpo", "clip_range"),
    ("ddpo_buffer_size", 7, "ddpo", "buffer_size"),
    ("ddpo_min_count", 3, "ddpo", "min_count"),
])
def test_old_names_still_work_with_a_one_line_warning(old, value, group, new):
    with pytest.warns(FutureWarning, match=rf"^{old} in command line is deprecated: it is read as "
                                           rf"{group}.{new}, write that$"):
        config = RebelConfig().with_overrides({old: str(value)})
    assert getattr(getattr(config, group), new) == value
    assert getattr(RebelConfig(), group).__dict__[new] != value  # not the default by chance


def test_a_config_saved_with_the_old_names_loads_as_resume_reads_it(tmp_path):
    """A run saved before the renames: grpo's `epsilon`, ddpo's prefixed names, and DDPO's clip
    read from ppo.clip_range; loaded the way `resume` loads config.yaml."""
    saved = RebelConfig().to_dict()
    saved["training"]["algorithm"] = "ddpo"
    saved["ppo"]["clip_range"] = 0.15
    saved["grpo"] = {"epsilon": 0.3, "scale_rewards": False}
    saved["ddpo"] = {"ddpo_buffer_size": 8, "ddpo_min_count": 4, "ddpo_adv_clip": 2.0}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(saved))
    with pytest.warns(FutureWarning):
        config = RebelConfig.from_yaml(path).with_overrides({"output_dir": str(tmp_path)})
    config.validate()  # as the trainer does with a resumed config
    assert (config.grpo.clip_range, config.grpo.scale_rewards) == (0.3, "none")
    assert (config.ddpo.buffer_size, config.ddpo.min_count, config.ddpo.ddpo_adv_clip) == (8, 4, 2.0)
    assert (config.ddpo.clip_range, config.ppo.clip_range) == (0.15, 0.15)
    assert config.training.algorithm == "ddpo"


def test_the_packaged_recipes_use_no_deprecated_name():
    import warnings

    from rebel_rl.config.base import CONFIG_FOLDER

    for path in sorted(CONFIG_FOLDER.glob("*.yaml")):
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            RebelConfig.from_yaml(path)


def test_the_command_line_takes_a_shared_name_flat_qualified_and_by_its_old_name():
    from rebel_rl.cli import build_parser, stage_overrides

    def parsed(*argv: str) -> RebelConfig:
        args = build_parser("train").parse_args(["train", *argv])
        return RebelConfig().with_overrides(stage_overrides(args, "resume", "new_lr_schedule"))

    flat = parsed("--clip_range", "0.3", "--algorithm", "grpo")
    assert (flat.ppo.clip_range, flat.grpo.clip_range) == (0.2, 0.3)
    qualified = parsed("--ppo.clip_range", "0.1", "--ddpo.clip_range", "0.4")
    assert (qualified.ppo.clip_range, qualified.ddpo.clip_range, qualified.grpo.clip_range) == (
        0.1, 0.4, 0.2)
    with pytest.warns(FutureWarning, match="^epsilon in command line is deprecated"):
        old = parsed("--epsilon", "0.05")
    assert old.grpo.clip_range == 0.05


# Where `config` is not a grouped config, or input arrives (flat names are resolved there), or the
# conversion is still under way; every other module reads `config.<group>.<field>`.
NOT_GROUPED = {
    "cli.py": "the boundary: flat command-line names",
    "compare": "CompareConfig and its budget are flat configs",
    "evaluation/model_eval.py": "EvaluateConfig is a flat config",
    "training/online/pairs.py": "its `config` is the data group",
    "policies/causal_lm/vllm/serve_app.py": "its `config` is a Hugging Face model config",
    "policies/causal_lm/sampling_draw.py": "its `config` is a transformers GenerationConfig",
}


def flat_reads() -> list[str]:
    """`config.NAME` / `self.config.NAME` reads in src where NAME is a grouped config's flat
    option (not a group), outside NOT_GROUPED."""
    import ast
    from pathlib import Path

    from rebel_rl.stage_configs import DPOConfig, PreferenceModelConfig, RewardModelConfig, SFTConfig

    classes = [RebelConfig, SFTConfig, RewardModelConfig, DPOConfig, PreferenceModelConfig]
    groups = {group for cls in classes for group in cls.groups()}
    names = {name for cls in classes for name, _, _ in cls.option_fields()} - groups
    package = Path(__file__).resolve().parents[1] / "src" / "rebel_rl"
    skipped = [package / path for path in NOT_GROUPED]
    reads = []
    for path in sorted(package.rglob("*.py")):
        if any(path == s or s in path.parents for s in skipped):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in names:
                base = ast.unparse(node.value)
                if base in ("config", "cfg", "self.config"):
                    reads.append(f"{path.relative_to(package)}:{node.lineno}: {ast.unparse(node)}")
    return reads


def test_src_reads_configs_by_group():
    assert flat_reads() == []


def test_the_flat_read_check_finds_a_flat_read(tmp_path, monkeypatch):
    """The check above can fail: a module with `config.eta` is reported."""
    from pathlib import Path

    import rebel_rl

    probe = Path(rebel_rl.__file__).parent / "_flat_read_probe.py"
    probe.write_text("def f(config):\n    return config.eta, config.rebel.eta\n")
    try:
        assert flat_reads() == ["_flat_read_probe.py:2: config.eta"]
    finally:
        probe.unlink()


def test_a_flat_shared_name_in_a_compare_grid_applies_to_each_methods_own_group(tmp_path):
    """`rebel compare` gives every method the same flat settings: clip_range lands in ppo's group
    for ppo and in grpo's for grpo."""
    from rebel_rl.compare.config import CompareConfig
    from rebel_rl.compare.jobs import online_config

    compare = CompareConfig(output_dir=str(tmp_path)).validate()
    built = {}
    for method, clip in [("ppo", 0.1), ("grpo", 0.3)]:
        values = online_config(compare, method, 0, tmp_path / method, "sft", "rm",
                               {"learning_rate": 1e-4, "clip_range": clip})
        built[method] = RebelConfig.from_dict(values)
    assert (built["ppo"].ppo.clip_range, built["ppo"].grpo.clip_range) == (0.1, 0.2)
    assert (built["grpo"].ppo.clip_range, built["grpo"].grpo.clip_range) == (0.2, 0.3)
