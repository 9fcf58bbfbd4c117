"""Built-in reward functions with the TRL signature `f(prompts, completions, **columns) -> list[float]`."""
from __future__ import annotations

from typing import Any, Callable

from rebel_rl.errors import RewardError
from rebel_rl.rewards.images import digit_quality, jpeg_compressibility, jpeg_incompressibility

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


def _tldr_columns(
    reward: str, completions: list, columns: dict[str, Any], needed: tuple[str, ...]
) -> list[list]:
    """The needed dataset columns of a `tldr_*` reward, each checked to be present and aligned."""
    missing = [name for name in needed if columns.get(name) is None]
    if missing:
        raise RewardError(
            f"reward '{reward}' needs the dataset column(s) {', '.join(missing)}, which come with "
            "builtin:tldr (use --dataset builtin:tldr, or add them to your data); it is meant for evaluation"
        )
    for name in needed:
        if len(columns[name]) != len(completions):
            raise RewardError(
                f"reward '{reward}': column {name} has {len(columns[name])} values for "
                f"{len(completions)} completions"
            )
    return [columns[name] for name in needed]


def tldr_judge(prompts: list, completions: list, **columns: Any) -> list[float]:
    """Gold-judge score of each completion as a summary of its builtin:tldr post (max 3.0; needs `facts`).

    For evaluation only: the judge plays GPT-4's role in the TL;DR experiment, and training against it
    would remove the proxy gap the task is built to show. See docs/summarization_task.md.
    """
    from rebel_rl.tasks.summarization_judge import judge_score

    (facts,) = _tldr_columns("tldr_judge", completions, columns, ("facts",))
    return [judge_score(f, completion_text(c)) for f, c in zip(facts, completions)]


def tldr_win_rate(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 / 0.5 / 0.0 per completion: the gold judge's verdict of it against the `reference` summary.

    The mean over a held-out set is the win rate against the references (ties count half), the
    TL;DR experiment's headline number. Needs the `facts` and `reference` columns of builtin:tldr.
    """
    from rebel_rl.tasks.summarization_judge import judge_compare

    facts, references = _tldr_columns("tldr_win_rate", completions, columns, ("facts", "reference"))
    return [
        judge_compare(f, completion_text(c), completion_text(r))
        for f, c, r in zip(facts, completions, references)
    ]


def aesthetic(prompts: list, completions: list, **columns: Any) -> list[float]:
    """The LAION aesthetic predictor's score of each image (CLIP ViT-L/14 + MLP head, fetched from the hub
    on first use and kept; on a GPU when there is one): the REBEL paper's image reward."""
    from rebel_rl.rewards.aesthetic import default_aesthetic_reward

    return default_aesthetic_reward()(prompts, completions, **columns)


BUILTIN_REWARDS: dict[str, Callable[..., list[float]]] = {
    "sentiment": sentiment,
    "length": length,
    "tldr_judge": tldr_judge,
    "tldr_win_rate": tldr_win_rate,
    # Images (a diffusion policy's completions are (C, H, W) tensors in [0, 1]; docs/images.md).
    "jpeg_compressibility": jpeg_compressibility,
    "jpeg_incompressibility": jpeg_incompressibility,
    "digit_quality": digit_quality,
    "aesthetic": aesthetic,
}
