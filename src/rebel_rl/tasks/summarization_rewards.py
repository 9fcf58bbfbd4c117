"""The `tldr` task's gold judge as rewards and as a preference, registered as `tldr_judge`,
`tldr_win_rate` and `tldr_judge_preference` (tasks/__init__.py). They read the judge's facts from
the dataset's columns.
"""
from __future__ import annotations

from typing import Any

from rebel_rl.data.formats import completion_text
from rebel_rl.errors import RewardError
from rebel_rl.tasks.summarization_judge import judge_compare, judge_score


def _tldr_columns(
    reward: str, completions: list, columns: dict[str, Any], needed: tuple[str, ...]
) -> list[list]:
    """The needed dataset columns of a `tldr_*` reward, each checked to be present and aligned."""
    missing = [name for name in needed if columns.get(name) is None]
    if missing:
        raise RewardError(
            f"reward '{reward}' needs the dataset column(s) {', '.join(missing)}, which your "
            "data lacks (builtin:tldr has them): drop it from --rewards or --eval_rewards "
            "(--eval_rewards none for no evaluation reward), or use --dataset builtin:tldr"
        )
    for name in needed:
        if len(columns[name]) != len(completions):
            raise RewardError(
                f"reward '{reward}': column {name} has {len(columns[name])} values for "
                f"{len(completions)} completions"
            )
    return [columns[name] for name in needed]


def tldr_judge(prompts: list, completions: list, **columns: Any) -> list[float]:
    """Gold-judge score of each completion as a summary of its builtin:tldr post (max 3.0; needs
    `facts`).

    For evaluation only: the judge plays GPT-4's role in the TL;DR experiment, and training against
    it would remove the proxy gap the task is built to show. See docs/summarization_task.md.
    """
    (facts,) = _tldr_columns("tldr_judge", completions, columns, ("facts",))
    return [judge_score(f, completion_text(c)) for f, c in zip(facts, completions)]


def tldr_win_rate(prompts: list, completions: list, **columns: Any) -> list[float]:
    """1.0 / 0.5 / 0.0 per completion: the gold judge's verdict of it against the `reference`
    summary.

    The mean over a held-out set is the win rate against the references (ties count half), the
    TL;DR experiment's headline number. Needs the `facts` and `reference` columns of builtin:tldr.
    """
    facts, references = _tldr_columns("tldr_win_rate", completions, columns, ("facts", "reference"))
    return [
        judge_compare(f, completion_text(c), completion_text(r))
        for f, c, r in zip(facts, completions, references)
    ]


def tldr_judge_preference(
    prompts: list, completions_a: list, completions_b: list, **columns: Any
) -> list[float]:
    """The builtin:tldr gold judge as a preference: 1.0 if a scores higher than b, 0.5 on a tie,
    else 0.0.

    Training on it uses the evaluation judge itself (the paper's GPT-4 role), so a win rate measured
    by the same judge afterwards is not a held-out measurement.
    """
    (facts,) = _tldr_columns("tldr_judge_preference", completions_a, columns, ("facts",))
    return [judge_compare(f, completion_text(a), completion_text(b))
            for f, a, b in zip(facts, completions_a, completions_b, strict=True)]
