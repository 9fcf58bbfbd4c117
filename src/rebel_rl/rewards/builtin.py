"""Built-in rewards and preferences by name, with the TRL signature `f(prompts, completions,
**columns)`.

BUILTIN_REWARDS holds the rewards of this package (below) and those the built-in tasks (tasks/)
register when `rebel_rl` is imported (`tldr_judge`, `digit_quality`, ...); BUILTIN_PREFERENCES the
pairwise preferences `f(prompts, completions_a, completions_b, **columns)` (preferences.py). An
entry may be a "module:function" reference, imported on first use (registry.py), so registering one
stays cheap.
"""
from __future__ import annotations

from typing import Any, Callable

from rebel_rl.data.formats import completion_text
from rebel_rl.registry import Registry

BUILTIN_REWARDS: Registry[Callable[..., list[float]]] = Registry("built-in reward")
BUILTIN_PREFERENCES: Registry[Callable[..., list[float]]] = Registry("built-in preference")

# Created on first use: building the VADER lexicon takes a moment and most runs never need it.
_ANALYZER = None


def register_reward(name: str, function: Callable[..., list[float]] | str) -> None:
    """Make reward spec `name` call `function` (or the "module:function" it names, imported on first
    use)."""
    BUILTIN_REWARDS.register(name, function)


def register_preference(name: str, function: Callable[..., list[float]] | str) -> None:
    """Make preference spec `name` call `function` (or the "module:function" it names) as P(a > b |
    x)."""
    BUILTIN_PREFERENCES.register(name, function)


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


def aesthetic(prompts: list, completions: list, **columns: Any) -> list[float]:
    """The LAION aesthetic predictor's score of each image (CLIP ViT-L/14 + MLP head, fetched from
    the hub on first use and kept; on a GPU when there is one): the REBEL paper's image reward."""
    from rebel_rl.rewards.aesthetic import default_aesthetic_reward

    return default_aesthetic_reward()(prompts, completions, **columns)


register_reward("sentiment", sentiment)
register_reward("length", length)
# Images (a diffusion policy's completions are (C, H, W) tensors in [0, 1]; docs/images.md).
register_reward("jpeg_compressibility", "rebel_rl.rewards.images:jpeg_compressibility")
register_reward("jpeg_incompressibility", "rebel_rl.rewards.images:jpeg_incompressibility")
register_reward("aesthetic", aesthetic)
# Verifiers for checkable answers (rewards/verifiers.py; the reference in the `answer` column).
register_reward("math_answer", "rebel_rl.rewards.verifiers:math_answer")
register_reward("exact_match", "rebel_rl.rewards.verifiers:exact_match")
register_reward("answer_tag_format", "rebel_rl.rewards.verifiers:answer_tag_format")
register_reward("boxed_format", "rebel_rl.rewards.verifiers:boxed_format")
