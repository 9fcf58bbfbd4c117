"""Built-in reasoning task `arithmetic`: problems with checkable answers, generated offline with
reasoning-gym's `basic_arithmetic` generator (two one-digit terms, + - * /, parentheses and
negation).

At this difficulty SmolLM2-135M-Instruct answers 10-18% of held-out samples correctly before
training (docs/reasoning.md), so training has room to move it. The test split comes from
another seed than the train split, and train holds no problem the test split holds (compared by
`problem_key`, which ignores spacing and parentheses). Prompts are conversational and state where
the answer goes; the reference is in column `answer`, which the verifier rewards read
(rewards/verifiers.py: `math_answer`, `answer_tag_format`).

Each prompt opens with one worked example as a finished chat turn (a fixed problem of the same
generator, in neither split, answered in the tags), because with the instruction alone the model
almost never sampled the tags, so the format reward had nothing to reinforce (docs/reasoning.md has
the measurement).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rebel_rl.errors import DataError

if TYPE_CHECKING:  # `datasets` and reasoning-gym are imported by the loader only
    import datasets

GENERATOR = "basic_arithmetic"
DIFFICULTY = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1}
SEEDS = {"train": 0, "test": 1}
SIZES = {"train": 1000, "test": 128}  # train before removing problems the test split holds
SPLITS = tuple(SEEDS)
SYSTEM = "You are a helpful assistant who solves arithmetic problems."
INSTRUCTION = " Put only the final answer inside <answer></answer>."
EXAMPLE = {"question": "Calculate 2 + 3.", "answer": "5"}  # the worked example; in no split


def problem_key(question: str) -> str:
    """A problem's identity for the overlap check: its text without spaces and parentheses."""
    return "".join(ch for ch in question if ch not in " ()")


def prompt_messages(question: str) -> list[dict]:
    """The chat prompt of one problem: the system message, the worked example as a user turn and
    the assistant's tagged answer (so the model has seen the format once), then the problem."""
    return [{"role": "system", "content": SYSTEM},
            {"role": "user", "content": EXAMPLE["question"] + INSTRUCTION},
            {"role": "assistant", "content": f"<answer>{EXAMPLE['answer']}</answer>"},
            {"role": "user", "content": question + INSTRUCTION}]


def generate(split: str) -> list[dict]:
    """The problems of `split` as reasoning-gym entries (question, answer), duplicates and the
    prompts' worked example removed; the train split also drops every problem of the test split."""
    import reasoning_gym

    entries = reasoning_gym.create_dataset(
        GENERATOR, size=SIZES[split], seed=SEEDS[split], **DIFFICULTY
    )
    taken = {problem_key(e["question"]) for e in generate("test")} if split == "train" else set()
    taken.add(problem_key(EXAMPLE["question"]))  # the prompts' example is never a problem
    kept = []
    for entry in entries:
        key = problem_key(entry["question"])
        if key not in taken:
            taken.add(key)
            kept.append({"question": entry["question"], "answer": str(entry["answer"])})
    return kept


def load_arithmetic(split: str = "train") -> datasets.Dataset:
    """The `split` ("train" or "test") of builtin:arithmetic with columns prompt (conversational),
    answer (the reference) and question (the problem text)."""
    if split not in SPLITS:
        choices = ", ".join(SPLITS)
        raise DataError(f"the arithmetic task has no split '{split}': use one of {choices}")
    import datasets

    rows = generate(split)
    prompts = [prompt_messages(row["question"]) for row in rows]
    return datasets.Dataset.from_dict({
        "prompt": prompts,
        "answer": [row["answer"] for row in rows],
        "question": [row["question"] for row in rows],
    })
