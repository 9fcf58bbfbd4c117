"""Built-in prompt set `positive_sentiment`: short open questions whose answers can be more or less
upbeat.

Prompts are conversational (`[{"role": "system", ...}, {"role": "user", "content": ...}]`) and built
deterministically from question templates x everyday topics. The short system message stands in for
SmolLM2's default one, which its chat template adds when a conversation has none: 16 tokens more per
prompt, about a third of the demo's prompt compute. Train and test use disjoint topics, so the test
split measures generalisation to topics the policy never saw during training.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # `datasets` is imported by the loader: registering the task stays light
    import datasets

# "One short sentence", not "one or two sentences": SmolLM2-135M-Instruct then ends 91% of its
# held-out answers within 48 new tokens (48% before), so the demo's completions are whole answers.
TEMPLATES = (
    "Describe {topic} in one short sentence.",
    "What do you think of {topic}? Answer in one short sentence.",
    "Tell me about {topic} in one short sentence.",
    "How do you feel about {topic}? Keep it to one short sentence.",
    "Write one short sentence about {topic}.",
)

TRAIN_TOPICS = (
    "the morning commute", "rainy Mondays", "a restaurant you visited recently", "grocery shopping",
    "public libraries", "winter mornings", "your neighbours", "cooking dinner at home",
    "long train journeys", "the first day of spring", "airports", "Sunday afternoons",
    "doing the laundry", "city parks", "your favourite coffee shop", "working from home",
    "summer holidays", "waiting in line at the post office", "old photographs", "street markets",
    "learning a new language", "thunderstorms", "your childhood home", "birthday parties",
    "visiting the dentist", "morning runs", "houseplants", "traffic jams",
    "a book you read last year", "the school cafeteria", "camping trips", "your first job",
    "cleaning the kitchen", "museums", "late-night snacks", "road trips with friends",
    "the gym", "autumn leaves", "rush hour on the bus", "baking bread",
    "your hometown", "family dinners", "snow days", "the local bakery",
    "moving to a new apartment", "weekend mornings", "bicycle rides",
)

TEST_TOPICS = (
    "hospital waiting rooms", "farmers' markets", "your daily walk", "flight delays",
    "picnics in the park", "group projects", "the beach in winter", "hardware stores",
    "early-morning meetings", "garden vegetables", "train stations", "a concert you attended",
    "Friday evenings",
)

SPLITS = {"train": TRAIN_TOPICS, "test": TEST_TOPICS}
SYSTEM = "You are a helpful assistant."


def _rows(topics: tuple[str, ...]) -> dict[str, list]:
    """Build the column dict for one split: every template applied to every topic, topic-major."""
    prompts, topic_column = [], []
    for topic in topics:
        for template in TEMPLATES:
            prompts.append([{"role": "system", "content": SYSTEM},
                            {"role": "user", "content": template.format(topic=topic)}])
            topic_column.append(topic)
    return {"prompt": prompts, "topic": topic_column}


def load(split: str = "train") -> datasets.Dataset:
    """Return the `split` ("train" or "test") of the positive-sentiment prompts with columns prompt,
    topic.

    Raises KeyError for an unknown split; the task registry turns that into a DataError for the
    user.
    """
    import datasets

    return datasets.Dataset.from_dict(_rows(SPLITS[split]))
