"""The verifier rewards (rewards/verifiers.py): extraction, equivalence, format, bad input."""
import pytest

from rebel_rl.errors import RewardError
from rebel_rl.rewards.builtin import BUILTIN_REWARDS
from rebel_rl.rewards.verifiers import extract_answer


def score(name: str, completions: list, **columns) -> list[float]:
    return BUILTIN_REWARDS[name]([""] * len(completions), completions, **columns)


def test_extract_answer_takes_the_last_tag_then_the_last_balanced_box():
    assert extract_answer("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert extract_answer(r"so \boxed{\frac{1}{2}} and \boxed{x^{2}}") == "x^{2}"
    assert extract_answer(r"\boxed{3") is None
    assert extract_answer("the answer is 4") is None


def test_math_answer_accepts_equivalent_forms_and_rejects_wrong_ones():
    completions = ["<answer>0.5</answer>", r"\boxed{\frac{1}{2}}", "<answer>1/2</answer>",
                   "<answer>-1/2</answer>", "no number at all"]
    assert score("math_answer", completions, answer=["1/2"] * 5) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_math_answer_without_a_tag_takes_the_last_number_but_a_tag_wins():
    completions = ["2 - 1 = 0 so the answer is 2.", "It is 2, no 3", "<answer>3</answer> not 2"]
    assert score("math_answer", completions, answer=["2"] * 3) == [1.0, 0.0, 0.0]


def test_math_answer_reads_trl_solution_column_and_chat_completions():
    completions = [[{"role": "assistant", "content": "<answer>12</answer>"}]]
    assert score("math_answer", completions, solution=["12"]) == [1.0]


def test_exact_match_normalises_case_space_and_final_period():
    completions = ["<answer> Paris. </answer>", "<answer>paris</answer>", "<answer>Lyon</answer>"]
    assert score("exact_match", completions, answer=["paris", "PARIS", "Paris"]) == [1.0, 1.0, 0.0]


def test_format_rewards_want_exactly_one_non_empty_answer_in_place():
    tags = ["<answer>1</answer>", "<answer> </answer>", "<answer>1</answer><answer>2</answer>", "1"]
    assert score("answer_tag_format", tags) == [1.0, 0.0, 0.0, 0.0]
    boxes = [r"\boxed{3}", r"\boxed{", r"\boxed{}", "3"]
    assert score("boxed_format", boxes) == [1.0, 0.0, 0.0, 0.0]


def test_missing_or_misaligned_answer_column_is_one_clear_line():
    with pytest.raises(RewardError, match="needs the reference answer in a dataset column"):
        score("math_answer", ["<answer>1</answer>"])
    with pytest.raises(RewardError, match="column answer has 2 values for 1 completions"):
        score("exact_match", ["<answer>1</answer>"], answer=["1", "2"])
