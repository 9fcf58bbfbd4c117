"""Rewards: builtins, user functions, the reward-model wrapper, and RewardSet validation and weighting."""
import json
import math
import sys
import textwrap
import types

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rebel_rl.errors import ConfigError, RewardError
from rebel_rl.rewards import (
    BUILTIN_REWARDS,
    RewardModel,
    RewardSet,
    check_reward_spec,
    length,
    load_reward_function,
    resolve_reward,
    sentiment,
)
from tiny import save_tiny_causal_lm, save_tiny_reward_model

POSITIVE = "I absolutely love this wonderful sunny day, it makes me so happy!"
NEGATIVE = "This is a terrible, awful day and I hate everything about it."
CHAT_PROMPT = [{"role": "user", "content": "How was your day?"}]


@pytest.fixture(scope="module")
def rm_path(tmp_path_factory):
    return save_tiny_reward_model(tmp_path_factory.mktemp("rm") / "reward_model")


@pytest.fixture
def user_file(tmp_path):
    """A reward file using an extra dataset column, plus a helper module it imports."""
    (tmp_path / "helper_mod.py").write_text("BONUS = 0.5\n")
    path = tmp_path / "my_reward.py"
    path.write_text(textwrap.dedent("""
        from helper_mod import BONUS
        NOT_CALLABLE = 3

        def uses_label(prompts, completions, label, **kwargs):
            return [float(x) + BONUS for x in label]
    """))
    return path


# ---- builtins -------------------------------------------------------------------------------

def test_sentiment_ranks_positive_above_negative_in_both_formats():
    standard = sentiment(["p", "p"], [POSITIVE, NEGATIVE])
    chat = sentiment(
        [CHAT_PROMPT, CHAT_PROMPT],
        [[{"role": "assistant", "content": POSITIVE}], [{"role": "assistant", "content": NEGATIVE}]],
    )
    assert standard == chat
    assert standard[0] > 0.5 and standard[1] < -0.5


def test_length_builtin():
    assert length(["p", "p"], ["one two three", ""]) == [0.03, 0.0]
    assert set(BUILTIN_REWARDS) >= {"sentiment", "length"}


# ---- user functions -------------------------------------------------------------------------

def test_load_module_function():
    function = load_reward_function("rebel_rl.rewards.builtin:length")
    assert function is length


def test_load_file_function_and_extra_columns_reach_it(user_file):
    rewards = RewardSet([f"{user_file}:uses_label"])
    assert rewards.names == ["uses_label"]
    total, parts = rewards(["a", "b"], ["x", "y"], {"label": [1, 2]})
    assert total.tolist() == [1.5, 2.5]
    assert parts["uses_label"].tolist() == [1.5, 2.5]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("no_colon_here", "unknown reward 'no_colon_here'"),
        ("missing_dir/none.py:f", "reward file not found: missing_dir/none.py"),
        ("rebel_rl.no_such_module:f", "cannot import reward module 'rebel_rl.no_such_module': ModuleNotFoundError"),
        ("rebel_rl.rewards.builtin:nope", "'nope' not found in rebel_rl.rewards.builtin"),
        ("rebel_rl.rewards.builtin:_ANALYZER", "not a function"),
    ],
)
def test_bad_function_specs(spec, message):
    with pytest.raises(RewardError, match=message.replace(".", r"\.").replace("(", r"\(")):
        resolve_reward(spec)
    with pytest.raises(RewardError):
        check_reward_spec(spec)


def test_bad_spec_form_without_colon():
    with pytest.raises(RewardError, match="must look like"):
        load_reward_function("just_a_module")


def test_file_that_fails_to_import(tmp_path, user_file):
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('setup failed')\n")
    with pytest.raises(RewardError, match="cannot import reward file .*RuntimeError: setup failed"):
        load_reward_function(f"{broken}:f")
    with pytest.raises(RewardError, match="not a function"):
        load_reward_function(f"{user_file}:NOT_CALLABLE")


# ---- RewardSet --------------------------------------------------------------------------------

def _constant(values):
    def reward(prompts, completions, **kwargs):
        return values
    return reward


def _with_function(monkeypatch, function, name="custom"):
    """A RewardSet whose only reward is `function` (resolved through a fake module)."""
    module = types.ModuleType("fake_rewards_mod")
    setattr(module, name, function)
    monkeypatch.setitem(sys.modules, "fake_rewards_mod", module)
    return RewardSet([f"fake_rewards_mod:{name}"])


def test_weights_combine_exactly(monkeypatch):
    module = types.ModuleType("fake_weights_mod")
    module.a = _constant([1.0, 2.0, -0.5])
    module.b = _constant([0.25, 4, 8])
    monkeypatch.setitem(sys.modules, "fake_weights_mod", module)
    rewards = RewardSet(["fake_weights_mod:a", "fake_weights_mod:b"], weights=[2.0, -0.5])
    total, parts = rewards(["p"] * 3, ["c"] * 3, {})
    assert total.dtype == torch.float32 and total.shape == (3,)
    assert total.tolist() == [2.0 - 0.125, 4.0 - 2.0, -1.0 - 4.0]
    assert parts["reward"].tolist() == [1.0, 2.0, -0.5]  # unweighted
    assert rewards.names == ["reward", "reward_2"]


def test_completions_are_formatted_per_prompt(monkeypatch):
    seen = []

    def record(prompts, completions, **kwargs):
        seen.extend(completions)
        return [0.0] * len(completions)

    rewards = _with_function(monkeypatch, record)
    rewards(["plain", CHAT_PROMPT], ["a", "b"], {})
    assert seen == ["a", [{"role": "assistant", "content": "b"}]]


def test_duplicate_builtin_names_get_suffixes():
    rewards = RewardSet(["sentiment", "length", "sentiment"])
    assert rewards.names == ["sentiment", "length", "sentiment_2"]
    total, parts = rewards(["p", "p"], [POSITIVE, NEGATIVE], {})
    expected = 2 * parts["sentiment"] + parts["length"]
    assert torch.allclose(total, expected)


@pytest.mark.parametrize(
    "values, message",
    [
        ([1.0, 2.0, 3.0], "returned 3 values for 4 completions"),
        ([1.0, float("nan"), 0.0, 0.0], "at index 1"),
        ([1.0, 0.0, float("inf"), 0.0], "at index 2"),
        ([1.0, "high", 0.0, 0.0], "at index 1"),
        (0.5, "returned float"),
        (None, "returned NoneType"),
    ],
)
def test_bad_outputs_name_reward_and_problem(monkeypatch, values, message):
    rewards = _with_function(monkeypatch, _constant(values), name="judge")
    with pytest.raises(RewardError, match=f"reward 'reward'.*{message}"):
        rewards(["p"] * 4, ["c"] * 4, {})


def test_tensor_output_accepted(monkeypatch):
    rewards = _with_function(monkeypatch, _constant(torch.tensor([0.5, 1.5])))
    total, _ = rewards(["p", "p"], ["c", "c"], {})
    assert total.tolist() == [0.5, 1.5]


def test_raising_reward_is_one_line(monkeypatch):
    def explode(prompts, completions, **kwargs):
        raise KeyError("label")

    rewards = _with_function(monkeypatch, explode)
    with pytest.raises(RewardError, match="reward 'explode' raised KeyError: 'label'"):
        rewards(["p"], ["c"], {})


def test_weight_count_mismatch_and_no_rewards():
    with pytest.raises(ConfigError, match="2 reward weights for 1 rewards"):
        RewardSet(["sentiment"], weights=[1.0, 2.0])
    with pytest.raises(ConfigError):
        RewardSet([])


def test_unknown_spec_lists_builtins():
    from rebel_rl.rewards.builtin import BUILTIN_REWARDS

    builtins = ", ".join(sorted(BUILTIN_REWARDS))
    assert "math_answer" in builtins and "sentiment" in builtins
    with pytest.raises(RewardError, match=f"use a builtin \\({builtins}\\)"):
        RewardSet(["happiness"])


# ---- reward model -----------------------------------------------------------------------------

def test_reward_model_scores_and_matches_manual_forward(rm_path):
    rm = RewardModel(str(rm_path), batch_size=2)
    prompts = ["the movie was", "tell me about", CHAT_PROMPT]
    completions = [" great", " your weekend please and the sun", [{"role": "assistant", "content": "good"}]]
    scores = rm(prompts, completions)
    assert len(scores) == 3 and all(math.isfinite(s) for s in scores)
    assert rm(prompts, completions) == scores  # deterministic, and batch padding does not matter
    assert RewardModel(str(rm_path), batch_size=1)(prompts, completions) == pytest.approx(scores, abs=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(rm_path)
    model = AutoModelForSequenceClassification.from_pretrained(rm_path).eval()
    with torch.no_grad():
        ids = tokenizer("tell me about your weekend please and the sun", return_tensors="pt")["input_ids"]
        plain = model(input_ids=ids).logits[0, 0].item()
        chat = tokenizer.apply_chat_template(CHAT_PROMPT + [{"role": "assistant", "content": "good"}], tokenize=False)
        ids = tokenizer(chat, add_special_tokens=False, return_tensors="pt")["input_ids"]
        templated = model(input_ids=ids).logits[0, 0].item()
    assert scores[1] == pytest.approx(plain, abs=1e-5)
    assert scores[2] == pytest.approx(templated, abs=1e-5)


def test_reward_model_truncates_long_completion_keeping_the_end(rm_path):
    rm = RewardModel(str(rm_path))
    assert rm.max_length == 128  # the tiny model's max_position_embeddings
    long_completion = " the movie was great and i loved it" * 200
    assert len(rm.tokenizer(long_completion)["input_ids"]) > 128
    ids = rm.encode("tell me", long_completion)
    assert len(ids) == 128
    assert rm.tokenizer.decode(ids).endswith("i loved it")
    (score,) = rm(["tell me"], [long_completion])
    assert math.isfinite(score)


def test_reward_model_through_specs(rm_path):
    for spec in (f"model:{rm_path}", str(rm_path)):
        check_reward_spec(spec)
        name, function = resolve_reward(spec)
        assert name == "reward_model" and isinstance(function, RewardModel)
    rewards = RewardSet([str(rm_path), "sentiment", f"model:{rm_path}"])
    assert rewards.names == ["reward_model", "sentiment", "reward_model_2"]
    total, parts = rewards([CHAT_PROMPT], [POSITIVE], {})
    assert torch.isfinite(total).all()


def test_reward_model_errors(tmp_path, rm_path):
    with pytest.raises(RewardError, match="reward model folder not found"):
        RewardModel(str(tmp_path / "nowhere"))
    with pytest.raises(RewardError, match="reward model folder not found"):
        check_reward_spec(f"model:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RewardError, match="has no config.json"):
        check_reward_spec(f"model:{tmp_path / 'empty'}")
    check_reward_spec("model:org/some-reward-model")  # hub-id shaped: accepted without any download
    lm = save_tiny_causal_lm(tmp_path / "lm")
    config = json.loads((lm / "config.json").read_text())
    config["id2label"] = {"0": "a", "1": "b"}
    (lm / "config.json").write_text(json.dumps(config))
    with pytest.raises(RewardError, match="num_labels=2"):
        check_reward_spec(str(lm))
    with pytest.raises(RewardError, match="num_labels=2"):
        RewardModel(str(lm))
