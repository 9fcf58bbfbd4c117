"""Built-in prompt set `animals`: one common animal name per prompt, as in DDPO's and the REBEL
paper's aesthetic-score experiments (prompts such as "cat", "dog", ...). For text-to-image policies
(configs/lcm_aesthetic.yaml); the test split holds animals the train split does not.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from rebel_rl.errors import DataError

if TYPE_CHECKING:  # `datasets` is imported by the loader: registering the task stays light
    import datasets

ANIMALS = (
    "cat",
    "dog",
    "horse",
    "monkey",
    "rabbit",
    "zebra",
    "spider",
    "bird",
    "sheep",
    "deer",
    "cow",
    "goat",
    "lion",
    "tiger",
    "bear",
    "raccoon",
    "fox",
    "wolf",
    "lizard",
    "beetle",
    "ant",
    "butterfly",
    "fish",
    "shark",
    "whale",
    "dolphin",
    "squirrel",
    "mouse",
    "rat",
    "snake",
    "turtle",
    "frog",
    "chicken",
    "duck",
    "goose",
    "bee",
    "pig",
    "turkey",
    "fly",
    "llama",
    "camel",
    "bat",
    "gorilla",
    "hedgehog",
    "kangaroo",
)
TEST_ANIMALS = (
    "zebra",
    "raccoon",
    "dolphin",
    "turtle",
    "camel",
    "hedgehog",
    "owl",
    "penguin",
    "panda",
)
SPLITS = ("train", "test")


def load_animal_prompts(split: str = "train") -> datasets.Dataset:
    """`train`: the animals above minus the test ones (39); `test`: 9 held-out animals. Column
    `prompt`."""
    if split not in SPLITS:
        raise DataError(f"the animals task has no split '{split}': use one of {', '.join(SPLITS)}")
    import datasets

    names = (
        [a for a in ANIMALS if a not in TEST_ANIMALS] if split == "train" else list(TEST_ANIMALS)
    )
    return datasets.Dataset.from_dict({"prompt": names})
