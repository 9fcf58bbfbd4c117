"""Verifier rewards for problems with checkable answers: `math_answer`, `exact_match` and the format
rewards `answer_tag_format` and `boxed_format`, registered as built-ins (rewards/builtin.py).

They follow TRL's convention: the reference answer arrives as the dataset column `answer` (or
`solution`, TRL's name in its math examples) passed as a keyword. The model's answer is the
content of its last `<answer>...</answer>` tag, else of its last `\\boxed{...}`; a completion
with neither scores 0, except that `math_answer` then takes the last number in the text ("The
answer is 2."), as GSM8K-style graders do: a model that answers right in the wrong place is still
right, and the format rewards teach the place. `math_answer` checks equivalence with HF's
math-verify (LaTeX, fractions, plain numbers), so "0.5", "1/2" and "\\frac{1}{2}" all match a
reference of 1/2.
"""
from __future__ import annotations

import re
from typing import Any, Callable

from rebel_rl.data.formats import completion_text
from rebel_rl.errors import RewardError

ANSWER_COLUMNS = ("answer", "solution")
_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_BOXED = "\\boxed{"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")


def extract_answer(text: str) -> str | None:
    """The content of the last `<answer>...</answer>` in `text`, else of the last `\\boxed{...}`
    (braces balanced), stripped; None if there is neither."""
    tags = _TAG.findall(text)
    if tags:
        return tags[-1].strip()
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(_BOXED)
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[begin:i].strip()
    return None  # an unclosed \boxed{ is no answer


def last_number(text: str) -> str | None:
    """The last number in `text` (integer, decimal or a/b fraction), or None."""
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def reference_answers(reward: str, completions: list, columns: dict[str, Any]) -> list[str]:
    """The reference answers from the `answer` (or `solution`) column, checked to be present and
    aligned with `completions`; RewardError naming the reward and the fix otherwise."""
    column = next((name for name in ANSWER_COLUMNS if columns.get(name) is not None), None)
    if column is None:
        raise RewardError(
            f"reward '{reward}' needs the reference answer in a dataset column 'answer' (or "
            "'solution'): add it to your data, or use a built-in task such as builtin:arithmetic"
        )
    values = columns[column]
    if len(values) != len(completions):
        raise RewardError(
            f"reward '{reward}': column {column} has {len(values)} values for "
            f"{len(completions)} completions"
        )
    return [str(v) for v in values]


def normalize(answer: str) -> str:
    """Lower case, whitespace collapsed, a trailing period dropped: what `exact_match` compares."""
    return " ".join(answer.lower().split()).rstrip(".").strip()


def math_equivalent(reference: str, answer: str) -> bool:
    """Whether math-verify finds `answer` equivalent to `reference` (exact normalised text also
    counts, for answers math-verify cannot parse)."""
    if normalize(reference) == normalize(answer):
        return True
    from math_verify import parse, verify

    # Wrapping in $...$ lets math-verify's LaTeX extraction read bare expressions such as "3/4".
    gold, guess = parse(f"${reference}$"), parse(f"${answer}$")
    return bool(gold) and bool(guess) and bool(verify(gold, guess))


def _graded(reward: str, completions: list, columns: dict[str, Any],
            answer_of: Callable[[str], str | None],
            correct: Callable[[str, str], bool]) -> list[float]:
    """1.0 per completion whose answer (`answer_of` its text) is `correct(reference, answer)`."""
    references = reference_answers(reward, completions, columns)
    scores = []
    for completion, reference in zip(completions, references):
        answer = answer_of(completion_text(completion))
        scores.append(float(answer is not None and correct(reference, answer)))
    return scores


def _answer_or_last_number(text: str) -> str | None:
    """The tagged or boxed answer, else the last number in the text."""
    answer = extract_answer(text)
    return last_number(text) if answer is None else answer


def math_answer(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 per completion whose answer (tagged or boxed, else its last number) math-verify finds
    equivalent to the reference, else 0.0."""
    return _graded("math_answer", completions, columns, _answer_or_last_number, math_equivalent)


def exact_match(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 per completion whose extracted answer equals the reference after `normalize`."""
    same = lambda reference, answer: normalize(answer) == normalize(reference)  # noqa: E731
    return _graded("exact_match", completions, columns, extract_answer, same)


def answer_tag_format(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 per completion with exactly one non-empty `<answer>...</answer>`, else 0.0."""
    scores = []
    for completion in completions:
        tags = _TAG.findall(completion_text(completion))
        scores.append(float(len(tags) == 1 and bool(tags[0].strip())))
    return scores


def boxed_format(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 per completion whose answer is given in a closed, non-empty `\\boxed{...}`, else 0.0."""
    scores = []
    for completion in completions:
        text = completion_text(completion)
        has_box = _BOXED in text and not _TAG.search(text)
        scores.append(float(has_box and bool(extract_answer(text))))
    return scores
