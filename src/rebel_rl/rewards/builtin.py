"""Built-in reward functions with the TRL signature `f(prompts, completions, **columns) -> list[float]`."""
from __future__ import annotations

from typing import Any, Callable

# Created on first use: building the VADER lexicon takes a moment and most runs never need it.
_ANALYZER = None


def completion_text(completion: str | list[dict]) -> str:
    """Return the text of a completion given as a string or as a list of messages (TRL format)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def _sentiment_analyzer() -> Any:
    """Return the shared VADER analyzer, creating it on first call."""
    global _ANALYZER
    if _ANALYZER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _ANALYZER = SentimentIntensityAnalyzer()
    return _ANALYZER


def sentiment(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """VADER compound sentiment of each completion, in [-1, 1]; higher means more positive."""
    analyzer = _sentiment_analyzer()
    return [float(analyzer.polarity_scores(completion_text(c))["compound"]) for c in completions]


def length(prompts: list, completions: list, **kwargs: Any) -> list[float]:
    """Number of whitespace-separated words in each completion divided by 100."""
    return [len(completion_text(c).split()) / 100 for c in completions]


BUILTIN_REWARDS: dict[str, Callable[..., list[float]]] = {"sentiment": sentiment, "length": length}
