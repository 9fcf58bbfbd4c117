"""`rebel preference-model`: a pairwise classifier trained on preference rows in both orders, loadable as a
`--preference model:PATH` source whose P(a > b) + P(b > a) = 1; preference specs and their errors."""
import json

import pytest
import torch
from transformers import AutoConfig

from rebel_rl.cli import main
from rebel_rl.errors import RewardError
from rebel_rl.rewards.preferences import Preference, check_preference_spec
from test_stages import preference_rows  # chosen says good, rejected bad; every fourth label flipped
from tiny import save_tiny_causal_lm, save_tiny_reward_model, write_jsonl

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("preference")
    model = save_tiny_causal_lm(root / "tiny")
    train, held_out = write_jsonl(root / "train.jsonl", preference_rows(0)), write_jsonl(root / "eval.jsonl", preference_rows(1))
    code = main(["preference-model", "--model_name_or_path", str(model), "--dataset", train, "--eval_dataset", held_out,
                 "--num_epochs", "8", "--batch_size", "8", "--learning_rate", "5e-3", "--output_dir", str(root / "pm"),
                 "--progress", "false", "--mixed_precision", "no"])
    assert code == 0
    return root


def test_preference_model_learns_the_judges_order(trained):
    saved = json.loads((trained / "pm" / "eval.json").read_text())
    assert saved["judge_accuracy"] == 1.0 and saved["accuracy"] == pytest.approx(0.75)  # flipped labels missed
    assert saved["train_mean_chosen_probability"] > 0.55
    # trained in both orders: f(x, a, b) + f(x, b, a) stays near 0 next to the margin f(x, c, r) - f(x, r, c)
    assert saved["train_antisymmetry_gap"] < 0.25 * saved["margin"]
    config = AutoConfig.from_pretrained(trained / "pm" / "final")
    assert config.pairwise_preference is True and config.num_labels == 1


def test_preference_model_is_a_preference_source_with_complementary_orders(trained):
    preference = Preference(f"model:{trained / 'pm' / 'final'}")
    prompts = ["tell me about the movie you saw .", "tell me about the book you saw ."]
    good, bad = [" the movie was good .", " the book was good ."], [" the movie was bad .", " the book was bad ."]
    forward, backward = preference(prompts, good, bad), preference(prompts, bad, good)
    assert (forward > 0.5).all()
    assert torch.allclose(forward + backward, torch.ones(2), atol=1e-6)  # both orders read and averaged
    # the per-prompt matrix of an iteration: row i, column j = P(y_i > y_j)
    matrix = preference.matrix(prompts[:1] * 2, [good[0], bad[0]], {}, 2)
    assert matrix[0, 0] == 0.5 and matrix[0, 1] == pytest.approx(float(forward[0])) and matrix[1, 0] == pytest.approx(float(backward[0]))


def test_preference_specs_are_checked_in_one_line(trained, tmp_path):
    check_preference_spec("tldr_judge_preference")
    check_preference_spec(f"model:{trained / 'pm' / 'final'}")
    with pytest.raises(RewardError, match="not a pairwise preference model"):
        check_preference_spec(f"model:{save_tiny_reward_model(tmp_path / 'rm')}")
    with pytest.raises(RewardError, match="unknown preference 'judge'"):
        check_preference_spec("judge")
    with pytest.raises(RewardError, match="in \\[0, 1\\]"):
        Preference(lambda p, a, b, **k: [1.5] * len(a))(["x"], ["a"], ["b"])


def test_builtin_judge_preference_compares_with_the_gold_judge():
    from rebel_rl.tasks.summarization import load_tldr

    row = load_tldr("validation")[0]
    good, bad = " " + row["reference"], " my my my my my"
    preference = Preference("tldr_judge_preference")
    values = preference([row["prompt"]] * 2, [good, bad], [bad, good], {"facts": [row["facts"]] * 2})
    assert values.tolist() == [1.0, 0.0]
