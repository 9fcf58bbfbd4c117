"""builtin:arithmetic (tasks/reasoning.py): disjoint splits, the answer format stated and shown
once by a worked example in neither split, references that the verifier accepts."""
import pytest

from rebel_rl.data.prompts import load_prompt_dataset
from rebel_rl.errors import DataError
from rebel_rl.rewards.builtin import BUILTIN_REWARDS
from rebel_rl.tasks.reasoning import EXAMPLE, load_arithmetic, problem_key


@pytest.fixture(scope="module")
def splits():
    return load_arithmetic("train"), load_arithmetic("test")


def test_train_and_test_share_no_problem_and_hold_no_duplicates(splits):
    train, test = ({problem_key(q) for q in s["question"]} for s in splits)
    assert len(train) == len(splits[0]) > 400 and len(test) == len(splits[1]) > 100
    assert not train & test
    assert problem_key("Calculate ( -9 / 9 ).") == problem_key("Calculate -9 / 9.")


def test_prompts_are_chat_messages_that_state_and_show_the_answer_format(splits):
    for split in splits:
        messages = split[0]["prompt"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
        assert messages[1]["content"] == "Calculate 2 + 3. Put only the final answer inside " \
            "<answer></answer>."
        assert messages[2]["content"] == "<answer>5</answer>"
        assert messages[3]["content"].startswith(split[0]["question"])
        assert messages[3]["content"].endswith("inside <answer></answer>.")


def test_the_worked_example_is_a_problem_of_neither_split_and_graded_right(splits):
    keys = {problem_key(q) for split in splits for q in split["question"]}
    assert problem_key(EXAMPLE["question"]) not in keys
    math_answer = BUILTIN_REWARDS["math_answer"]
    assert math_answer([""], ["<answer>5</answer>"], answer=[EXAMPLE["answer"]]) == [1.0]


def test_the_verifier_accepts_every_reference_and_rejects_a_shifted_one(splits):
    test = splits[1]
    right = [f"<answer>{a}</answer>" for a in test["answer"]]
    wrong = [f"<answer>{int(float(a)) + 1}</answer>" for a in test["answer"]]
    math_answer = BUILTIN_REWARDS["math_answer"]
    assert math_answer(test["prompt"], right, answer=test["answer"]) == [1.0] * len(test)
    assert math_answer(test["prompt"], wrong, answer=test["answer"]) == [0.0] * len(test)


def test_builtin_name_loads_through_the_dataset_loader_and_bad_split_is_clear():
    assert "answer" in load_prompt_dataset("builtin:arithmetic", split="test").column_names
    with pytest.raises(DataError, match="no split 'dev'"):
        load_arithmetic("dev")
