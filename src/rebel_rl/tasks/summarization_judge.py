"""The gold judge of the `tldr` task: scores a summary of a post from the post's stored facts.

It plays GPT-4's role in the REBEL paper's TL;DR experiment: it decides win rates and is never used
in training. A summary is read as lower-case word and punctuation tokens and scored as

    score = coverage - 1.0 * hallucinated - 0.5 * distractors - 0.5 * repeats
                     - 0.75 * disfluent - 0.25 * over_length

coverage: for each of the three key facts (person, problem, ask) the fraction of its key words
present (0..3); hallucinated: distinct fact words of the task's lexicon (roles, problems, asks,
details, names) that are not in this post; distractors: this post's distractor sentences whose
detail words appear; repeats: extra occurrences of content (non-function) words; disfluent: adjacent
token pairs found neither in the post nor in any phrase of the task's summaries nor at a junction of
two such phrases (keyword soup); over_length: tokens beyond LENGTH_BUDGET. The facts come from the
dataset's `facts` column (a JSON string), so the score is computable from the data.
"""
from __future__ import annotations

import functools
import itertools
import json
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from rebel_rl.tasks import summarization_tables as tables

LENGTH_BUDGET = 16  # tokens (words and punctuation marks); every oracle summary fits in 14
W_HALLUCINATION, W_DISTRACTOR, W_REPEAT, W_DISFLUENT, W_OVER_LENGTH = 1.0, 0.5, 0.5, 0.75, 0.25
TIE_TOLERANCE = 1e-9
SLOTS = ("person", "problem", "ask")

# Words that may repeat freely; every other word token counts towards `repeats` on its second use.
FUNCTION_WORDS = frozenset(
    (
        "i",
        "me",
        "my",
        "a",
        "an",
        "the",
        "to",
        "and",
        "of",
        "in",
        "on",
        "at",
        "for",
        "is",
        "it",
        "with",
        "not",
        "do",
        "so",
        "that",
        "this",
        "be",
        "am",
        "are",
        "was",
        "also",
        "them",
        "they",
        "or",
        "but",
        "what",
        "how",
        "should",
        "just",
        "up",
        "out",
        "too",
        "all",
        "every",
    )
)
_TOKEN = re.compile(r"[a-z0-9']+|[^\sa-z0-9']")


def tokenize(text: str) -> list[str]:
    """Split `text` into the judge's tokens: lower-case words and single punctuation marks."""
    return _TOKEN.findall(text.lower())


@functools.lru_cache(maxsize=1)
def fact_lexicon() -> frozenset[str]:
    """Every word that names a fact somewhere in the task: roles, problem/ask/detail key words,
    names.

    A summary that uses one of these words although the post does not contain that fact is
    hallucinating. The lexicon is read from the task's tables (summarization_tables.py).
    """
    words: set[str] = set(tables.NAMES) | set(tables.PET_NAMES)
    for sub in tables.SUBREDDITS.values():
        words.update(sub.roles)
        for problem in sub.problems:
            words.update(problem.keys)
        for ask in sub.asks:
            words.update(ask.keys)
    for ask in tables.COMMON_ASKS:
        words.update(ask.keys)
    for detail in tables.DISTRACTORS:
        words.update(detail.keys)
    return frozenset(word.lower() for word in words)


@functools.lru_cache(maxsize=1)
def phrase_bigrams() -> tuple[frozenset[tuple[str, str]], frozenset[str], frozenset[str]]:
    """What fluent summaries are made of: the bigrams inside the task's summary phrases, and the
    tokens that can end and start a phrase (any end token may be followed by any start token).

    Phrases: 'my ROLE', names, problem and ask phrases (asks after ', '), distractor clauses (after
    ', also '), filler prefixes and suffixes, and the vague 'having problems with'.
    """
    phrases = [f"my {role}" for sub in tables.SUBREDDITS.values() for role in sub.roles]
    phrases += list(tables.NAMES) + list(tables.PET_NAMES) + [tables.VAGUE_MAIN]
    phrases += list(tables.FILLER_PREFIXES) + list(tables.FILLER_SUFFIXES)
    for sub in tables.SUBREDDITS.values():
        phrases += [p.phrase for p in sub.problems] + [", " + a.phrase for a in sub.asks]
    phrases += [", " + a.phrase for a in tables.COMMON_ASKS] + [
        ", also " + d.clause for d in tables.DISTRACTORS
    ]
    inner, ends, starts = set(), set(), set()
    for phrase in phrases:
        tokens = tokenize(phrase)
        inner.update(itertools.pairwise(tokens))
        starts.add(tokens[0])
        ends.add(tokens[-1])
    return frozenset(inner), frozenset(ends), frozenset(starts)


def disfluent_pairs(summary_tokens: list[str], post: str = "") -> int:
    """Count adjacent token pairs of a summary that no fluent text of the task contains.

    A pair is fluent if it occurs in the post, inside a summary phrase, or joins the end of one
    phrase to the start of another (see phrase_bigrams); anything else reads as keyword soup.
    """
    inner, ends, starts = phrase_bigrams()
    unknown = [
        pair for pair in itertools.pairwise(summary_tokens)
        if pair not in inner and not (pair[0] in ends and pair[1] in starts)
    ]
    if unknown and post:
        post_pairs = set(itertools.pairwise(tokenize(post)))
        unknown = [pair for pair in unknown if pair not in post_pairs]
    return len(unknown)


def parse_facts(facts: str | Mapping[str, Any]) -> dict[str, Any]:
    """Return the facts of one post as a dict, accepting the `facts` column's JSON string or a dict.

    The dict has `name` (str), `person`, `problem`, `ask` (lists of key words), `distractors` (a
    list of key-word lists, one per distractor sentence of the post) and optionally `post` (its
    text, whose word pairs count as fluent); other keys are ignored.
    """
    if isinstance(facts, str):
        facts = json.loads(facts)
    if not isinstance(facts, Mapping) or any(
        k not in facts for k in (*SLOTS, "distractors", "name")
    ):
        raise ValueError(
            "facts must hold name, person, problem, ask and distractors (the `facts` column)"
        )
    return dict(facts)


def judge_breakdown(facts: str | Mapping[str, Any], summary: str) -> dict[str, Any]:
    """Score `summary` for the post described by `facts` and return every term of the rule.

    Keys: coverage (0..3), hallucinated (sorted list of words), distractors (count of this post's
    distractor sentences echoed), repeats, disfluent, length (tokens), over_length, and score (the
    total).
    """
    facts = parse_facts(facts)
    tokens = tokenize(summary)
    present = set(tokens)
    coverage = sum(
        sum(key in present for key in facts[slot]) / len(facts[slot])
        for slot in SLOTS
        if facts[slot]
    )
    own = {facts["name"].lower()} | {w for slot in SLOTS for w in facts[slot]}
    own |= {w for keys in facts["distractors"] for w in keys}
    hallucinated = sorted((present & fact_lexicon()) - own)
    distractors = sum(any(k in present for k in keys) for keys in facts["distractors"])
    counts = Counter(t for t in tokens if t[0].isalnum() and t not in FUNCTION_WORDS)
    repeats = sum(c - 1 for c in counts.values())
    disfluent = disfluent_pairs(tokens, facts.get("post", ""))
    over_length = max(0, len(tokens) - LENGTH_BUDGET)
    score = (
        coverage
        - W_HALLUCINATION * len(hallucinated)
        - W_DISTRACTOR * distractors
        - W_REPEAT * repeats
        - W_DISFLUENT * disfluent
        - W_OVER_LENGTH * over_length
    )
    return {
        "coverage": coverage,
        "hallucinated": hallucinated,
        "distractors": distractors,
        "repeats": repeats,
        "disfluent": disfluent,
        "length": len(tokens),
        "over_length": over_length,
        "score": float(score),
    }


def judge_score(facts: str | Mapping[str, Any], summary: str) -> float:
    """The gold judge's score of `summary` for the post described by `facts` (max 3.0; see the
    module doc)."""
    return judge_breakdown(facts, summary)["score"]


def judge_compare(facts: str | Mapping[str, Any], a: str, b: str) -> float:
    """Pairwise verdict of the gold judge: 1.0 if summary `a` scores higher than `b`, 0.5 on a tie,
    else 0.0.

    It is antisymmetric: judge_compare(f, a, b) + judge_compare(f, b, a) == 1. Win rates against the
    references are means of this value with `b` the reference.
    """
    facts = parse_facts(facts)
    diff = judge_score(facts, a) - judge_score(facts, b)
    if abs(diff) <= TIE_TOLERANCE:
        return 0.5
    return 1.0 if diff > 0 else 0.0


__all__ = [
    "LENGTH_BUDGET",
    "disfluent_pairs",
    "fact_lexicon",
    "judge_breakdown",
    "judge_compare",
    "judge_score",
    "parse_facts",
    "phrase_bigrams",
    "tokenize",
]
