"""Built-in multi-turn task `guess_number`: the environment hides a whole number in a range of 15
(low .. low+14); after each guess it says "higher" or "lower"; a correct guess scores 1 and ends
the episode, which also ends after MAX_TURNS guesses (score 0).

Several turns are really needed: one guess finds the number 1 time in 15, while halving the range
finds any of the 15 within 4 guesses (2**4 - 1 = 15), so the optimum within 4 turns is exactly 1.
Rows hold the secret in column `secret` and the range in `low` / `high`; the test split comes from
another seed than the train split, and no (low, secret) pair is in both. No downloads, no
reasoning-gym: the rows are drawn with Python's `random`.
"""
from __future__ import annotations

import random
import re
from typing import TYPE_CHECKING, Any

from rebel_rl.errors import DataError

if TYPE_CHECKING:
    import datasets

WIDTH = 15  # numbers in a range: 4 halvings find any of them
LOWEST = (1, 86)  # a range starts at one of these (inclusive), so rows differ beyond the secret
MAX_TURNS = 4
SEEDS = {"train": 0, "test": 1}
SIZES = {"train": 768, "test": 128}
SPLITS = tuple(SEEDS)
SYSTEM = "You are playing a number guessing game. Reply with your guess: one whole number."
NUMBER = re.compile(r"-?\d+")


def opening(low: int, high: int) -> list[dict[str, str]]:
    """The episode's first messages for the range low..high."""
    user = (f"I am thinking of a whole number from {low} to {high}. Guess it. After each guess I "
            f"will say higher or lower. You have {MAX_TURNS} guesses.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def parse_guess(text: str) -> int | None:
    """The guess in a reply, leniently: the last whole number in it ("Is it 7?" -> 7), or None."""
    numbers = NUMBER.findall(text)
    return int(numbers[-1]) if numbers else None


class GuessNumberEnvironment:
    """One game: reset(row) reads secret/low/high; step answers higher, lower or correct."""

    def __init__(self, max_turns: int = MAX_TURNS) -> None:
        self.max_turns = max_turns
        self.secret = self.low = self.high = 0
        self.turns = 0

    def reset(self, row: dict[str, Any]) -> list[dict[str, str]]:
        """Start the game for this row (columns secret, low, high)."""
        self.secret, self.low, self.high = int(row["secret"]), int(row["low"]), int(row["high"])
        self.turns = 0
        return opening(self.low, self.high)

    def step(self, assistant_message: str) -> tuple[list[dict[str, str]], float, bool]:
        """Feedback on one guess: reward 1 and done when it is right; done after max_turns."""
        self.turns += 1
        guess = parse_guess(assistant_message)
        out_of_turns = self.turns >= self.max_turns
        if guess == self.secret:
            return [{"role": "user", "content": "Correct!"}], 1.0, True
        if guess is None:
            feedback = "Please reply with one whole number."
        else:
            feedback = "Higher." if guess < self.secret else "Lower."
        if out_of_turns:
            feedback += f" No guesses left: it was {self.secret}."
        return [{"role": "user", "content": feedback}], 0.0, out_of_turns


def generate(split: str) -> list[dict[str, int]]:
    """The rows (secret, low, high) of `split`; train skips every (low, secret) pair of test."""
    rng = random.Random(SEEDS[split])
    taken = {(r["low"], r["secret"]) for r in generate("test")} if split == "train" else set()
    rows = []
    while len(rows) < SIZES[split]:
        low = rng.randint(*LOWEST)
        secret = rng.randint(low, low + WIDTH - 1)
        if (low, secret) not in taken:
            taken.add((low, secret))
            rows.append({"secret": secret, "low": low, "high": low + WIDTH - 1})
    return rows


def load_guess_number(split: str = "train") -> datasets.Dataset:
    """The `split` ("train" or "test") of builtin:guess_number: columns prompt (the opening
    messages), secret, low and high, for the environment builtin:guess_number."""
    if split not in SPLITS:
        raise DataError(f"the guess_number task has no split '{split}': use one of "
                        f"{', '.join(SPLITS)}")
    import datasets

    rows = generate(split)
    return datasets.Dataset.from_dict({
        "prompt": [opening(r["low"], r["high"]) for r in rows],
        "secret": [r["secret"] for r in rows],
        "low": [r["low"] for r in rows],
        "high": [r["high"] for r in rows],
    })
