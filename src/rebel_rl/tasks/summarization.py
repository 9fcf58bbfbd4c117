"""Built-in task `tldr`: an offline, seeded stand-in for the REBEL paper's TL;DR summarization
experiment.

A post is a short Reddit-style story in plain English with three key facts (who is involved, what
the problem is, what the poster asks) and two or three distractor sentences. Three parts play the
paper's roles: the gold judge (summarization_judge.py, GPT-4's role: decides win rates, never trains
anything); REFERENCE summaries from a noisy writer (the human TL;DRs: SFT targets and the win-rate
opponent); and PREFERENCE pairs of candidates of varied quality, labelled by the judge with
Bradley-Terry noise (the human comparisons that train the reward model and DPO). Candidates never
exceed the judge's length budget and never repeat themselves, so within the preference data longer
usually means more facts: a learned reward model is a useful proxy that also learns a length/keyword
bias the judge punishes beyond the budget. Everything is deterministic from `seed` (random.Random,
never the global state). See docs/summarization_task.md.
"""
from __future__ import annotations

import functools
import json
import math
import random
import statistics
import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rebel_rl.tasks.summarization_judge import (  # re-exported: the task's public API in one place
    LENGTH_BUDGET, judge_breakdown, judge_compare, judge_score, tokenize,
)
from rebel_rl.tasks.summarization_tables import (
    ASK_LEADS,
    COMMON_ASKS,
    DISTRACTORS,
    FEELINGS,
    FILLER_PREFIXES,
    FILLER_SUFFIXES,
    NAMES,
    PET_NAMES,
    SUBREDDITS,
    VAGUE_MAIN,
    YEARS,
    Ask,
    Detail,
    Problem,
)

if TYPE_CHECKING:  # `datasets` is imported by the loaders: registering the task stays light
    import datasets


MAX_POST_WORDS = 60
SPLIT_SIZES = {"test": 200, "validation": 200, "train": 2000}  # generated in this order, disjoint
PAIRS_PER_POST = 2
BT_TAU = 1.0  # label noise: chosen = a with probability sigmoid((score_a - score_b) / BT_TAU)


@dataclass(frozen=True)
class Post:
    """One generated post: its topic, the three key facts, its distractors, and its text."""

    subreddit: str
    role: str
    name: str
    problem: Problem
    ask: Ask
    details: tuple[Detail, ...]
    text: str

    @property
    def prompt(self) -> str:
        """The TL;DR-style prompt: subreddit line, post line, and 'TL;DR:' for the model to
        continue."""
        return f"SUBREDDIT: r/{self.subreddit}\nPOST: {self.text}\nTL;DR:"

    @property
    def facts(self) -> dict[str, Any]:
        """What the judge needs (the `facts` column, JSON-encoded): key words, distractors, name,
        post."""
        return {
            "subreddit": self.subreddit,
            "post": self.text,
            "name": self.name,
            "person": [self.role],
            "problem": list(self.problem.keys),
            "ask": list(self.ask.keys),
            "distractors": [list(d.keys) for d in self.details],
            "phrases": {
                "person": f"my {self.role}",
                "problem": self.problem.phrase,
                "ask": self.ask.phrase,
            },
        }


@dataclass(frozen=True)
class WriterStyle:
    """How a noisy writer summarises: per-slot omission probabilities and error/verbosity rates."""

    omit: tuple[float, float, float]  # person (the name is used instead), problem, ask
    distractor: float  # copies one distractor clause
    # adds a filler prefix, and (independently) a filler suffix, each with this chance
    filler: float
    hallucinate: float  # replaces one fact with a wrong one of the same topic
    max_tokens: int | None = None  # drop filler, then the distractor, until the summary fits


REFERENCE_STYLE = WriterStyle(omit=(0.15, 0.05, 0.35), distractor=0.2, filler=0.2, hallucinate=0.03)


def make_post(rng: random.Random) -> Post:
    """Draw one post: a topic, a role and name, a problem, an ask, two or three distractors, in
    order.

    Sentences: the intro (who), the problem, sometimes an elaboration, the distractors at random
    places among them, a feeling sentence, and the ask last; 30-60 words with spaced punctuation.
    """
    sub_name = rng.choice(tuple(SUBREDDITS))
    sub = SUBREDDITS[sub_name]
    role, name = rng.choice(sub.roles), rng.choice(PET_NAMES if sub.pets else NAMES)
    problem, ask = rng.choice(sub.problems), rng.choice(sub.asks + COMMON_ASKS)
    details = rng.sample(DISTRACTORS, rng.choice((2, 2, 3)))
    intro = rng.choice(sub.intros).format(role=role, name=name, years=rng.choice(YEARS))
    elaboration = rng.random() < 0.6
    places = [rng.randint(0, 3) for _ in details]
    ending = [rng.choice(FEELINGS), f"{rng.choice(ASK_LEADS)} {ask.phrase}"]
    while True:  # keep posts within MAX_POST_WORDS: drop the elaboration, then the third distractor
        body = [intro, problem.sentence.format(name=name)] + [problem.elaboration] * elaboration
        for detail, place in zip(details, places):
            body.insert(min(place, len(body)), detail.sentence)
        if _words(" ".join(body + ending)) <= MAX_POST_WORDS:
            break
        if elaboration:
            elaboration = False
        else:
            details, places = details[:2], places[:2]
    body += ending
    details = tuple(details)
    return Post(sub_name, role, name, problem, ask, details, " ".join(body))


def _words(text: str) -> int:
    """Number of words in `text`, not counting punctuation tokens."""
    return sum(token[0].isalnum() for token in text.split())


def oracle_summary(post: Post) -> str:
    """The ideal summary: the three key facts and nothing else, e.g. 'my roommate keeps eating my
    food , should I move out ?' (at most 14 tokens, judge score 3.0)."""
    return f"my {post.role} {post.problem.phrase} , {post.ask.phrase}"


def write_summary(post: Post, rng: random.Random, style: WriterStyle) -> tuple[str, dict[str, Any]]:
    """Write one noisy summary of `post` in `style`; return it and what the writer did (for
    analysis).

    The returned dict has `facts` (how many of the three key facts are stated correctly),
    `hallucinated`, `distractor` and `filler` (booleans).
    """
    sub = SUBREDDITS[post.subreddit]
    role, problem, ask, wrong = post.role, post.problem, post.ask, None
    if rng.random() < style.hallucinate:
        wrong = rng.choice(("person", "problem", "ask"))
        if wrong == "person":
            role = rng.choice([r for r in sub.roles if r != role])
        elif wrong == "problem":
            problem = rng.choice([p for p in sub.problems if p != problem])
        else:
            ask = rng.choice([a for a in sub.asks + COMMON_ASKS if a != ask])
    keep = [rng.random() >= p for p in style.omit]
    who = f"my {role}" if keep[0] else post.name
    parts = {
        "prefix": rng.choice(FILLER_PREFIXES) if rng.random() < style.filler else "",
        "main": f"{who} {problem.phrase}" if keep[1] else f"{VAGUE_MAIN} {who}",
        "detail": (
            f", also {rng.choice(post.details).clause}" if rng.random() < style.distractor else ""
        ),
        "suffix": rng.choice(FILLER_SUFFIXES) if rng.random() < style.filler else "",
        "ask": f", {ask.phrase}" if keep[2] else "",
    }
    # fit the cap by dropping extras, least useful first
    for optional in ("suffix", "prefix", "detail"):
        if style.max_tokens is None or len(tokenize(_join(parts))) <= style.max_tokens:
            break
        parts[optional] = ""
    stated = [
        keep[0] and wrong != "person",
        keep[1] and wrong != "problem",
        keep[2] and wrong != "ask",
    ]
    hallucinated = wrong is not None and keep[("person", "problem", "ask").index(wrong)]
    meta = {"facts": sum(stated), "hallucinated": hallucinated, "distractor": bool(parts["detail"]),
            "filler": bool(parts["prefix"] or parts["suffix"])}
    return _join(parts), meta


def _join(parts: dict[str, str]) -> str:
    """The summary text from its non-empty parts, in order."""
    return " ".join(part for part in parts.values() if part)


def reference_summary(post: Post, rng: random.Random) -> str:
    """A human-like reference TL;DR: usually right, sometimes omits a fact, copies a detail or
    rambles."""
    return write_summary(post, rng, REFERENCE_STYLE)[0]


def candidate_style(rng: random.Random) -> WriterStyle:
    """A random candidate-writer style: quality q ~ U(0, 1) sets omission, distractor and error
    rates.

    Candidates are capped at the judge's LENGTH_BUDGET, so the preference data never shows an
    over-long (or repetitive) summary losing: the proxy gap a reward model trained on it inherits.
    """
    bad = 1.0 - rng.random()
    return WriterStyle(omit=(0.1 + 0.4 * bad, 0.05 + 0.4 * bad, 0.1 + 0.5 * bad),
                       distractor=0.05 + 0.3 * bad, filler=0.3, hallucinate=0.3 * bad,
                       max_tokens=LENGTH_BUDGET)


def candidate_summary(post: Post, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One preference-data candidate of random quality (see candidate_style), with the writer's
    notes."""
    return write_summary(post, rng, candidate_style(rng))


def _rng(*parts: object) -> random.Random:
    """A generator seeded from a readable string, so every split and role gets its own stream."""
    return random.Random("tldr/" + "/".join(map(str, parts)))


@functools.lru_cache(maxsize=8)
def generate_posts(seed: int = 0) -> types.MappingProxyType[str, tuple[Post, ...]]:
    """All splits' posts for `seed` (read-only): test, validation, then train, each post text
    unique.

    Each split draws from its own seeded stream; a post whose text already appeared in an earlier
    split (or earlier in the same one) is skipped, so no test or validation post is in train.
    """
    seen: set[str] = set()
    splits: dict[str, tuple[Post, ...]] = {}
    for split, size in SPLIT_SIZES.items():
        rng, posts = _rng(seed, "posts", split), []
        while len(posts) < size:
            post = make_post(rng)
            if post.text not in seen:
                seen.add(post.text)
                posts.append(post)
        splits[split] = tuple(posts)
    return types.MappingProxyType(splits)


def preference_pairs(
    posts: tuple[Post, ...],
    rng: random.Random,
    pairs_per_post: int = PAIRS_PER_POST,
    tau: float = BT_TAU,
) -> list[dict[str, Any]]:
    """Bradley-Terry-labelled candidate pairs: chosen = a with probability sigmoid((s_a - s_b) /
    tau).

    Each pair holds two distinct candidates whose judge scores differ; `judge_prefers_chosen` is the
    noise-free label (False for the 'flipped' pairs), kept to measure a reward model against the
    judge.
    """
    rows = []
    for post in posts:
        facts = post.facts
        for _ in range(pairs_per_post):
            for _ in range(1000):  # redraw ties: every pair has a judge preference
                a, b = candidate_summary(post, rng)[0], candidate_summary(post, rng)[0]
                score_a, score_b = judge_score(facts, a), judge_score(facts, b)
                if abs(score_a - score_b) > 1e-9:
                    break
            else:
                raise RuntimeError(
                    f"no two candidates with different judge scores for: {post.text}"
                )
            a_wins = rng.random() < 1.0 / (1.0 + math.exp(-(score_a - score_b) / tau))
            chosen, rejected = (a, b) if a_wins else (b, a)
            rows.append({"prompt": post.prompt, "chosen": " " + chosen, "rejected": " " + rejected,
                         "judge_prefers_chosen": a_wins == (score_a > score_b),
                         "facts": json.dumps(facts)})
    return rows


@functools.lru_cache(maxsize=8)
def _columns(kind: str, split: str, seed: int) -> dict[str, tuple]:
    """Column tuples of one dataset (`tldr`, `sft` or `preferences`) and split, cached per
    process."""
    posts = generate_posts(seed)[split]
    if kind == "preferences":
        rows = preference_pairs(posts, _rng(seed, "preferences", split))
        return {key: tuple(row[key] for row in rows) for key in rows[0]}
    rng = _rng(seed, "references", split)
    references = [reference_summary(post, rng) for post in posts]
    prompts, facts = tuple(p.prompt for p in posts), tuple(json.dumps(p.facts) for p in posts)
    if kind == "sft":
        return {"prompt": prompts, "completion": tuple(" " + r for r in references), "facts": facts}
    return {"prompt": prompts, "reference": tuple(references), "facts": facts,
            "subreddit": tuple(p.subreddit for p in posts)}


def load_tldr(split: str = "train", seed: int = 0) -> datasets.Dataset:
    """`builtin:tldr`: prompt-only posts with columns prompt, reference, facts (JSON), subreddit."""
    return _dataset("tldr", split, seed)


def load_tldr_sft(split: str = "train", seed: int = 0) -> datasets.Dataset:
    """`builtin:tldr_sft`: prompt-completion pairs (completion = ' ' + reference) plus facts."""
    if split not in SFT_SPLITS:
        raise KeyError(split)
    return _dataset("sft", split, seed)


def load_tldr_preferences(split: str = "train", seed: int = 0) -> datasets.Dataset:
    """`builtin:tldr_preferences`: prompt, chosen, rejected (leading spaces), judge_prefers_chosen,
    facts."""
    return _dataset("preferences", split, seed)


def _dataset(kind: str, split: str, seed: int) -> datasets.Dataset:
    """One dataset of `_columns` as a datasets.Dataset."""
    import datasets

    return datasets.Dataset.from_dict({k: list(v) for k, v in _columns(kind, split, seed).items()})


def task_statistics(seed: int = 0, split: str = "train") -> dict[str, float]:
    """The checks behind docs/summarization_task.md, measured on one split of the generated data.

    Returns the reference and oracle mean judge scores, the oracle's win rate against the references
    (ties count half), the share of over-budget references, the BT label-noise rate (pairs where the
    judge prefers `rejected`), how often the chosen candidate is the longer one (pairs of unequal
    length), and the correlation of candidate length with being chosen.
    """
    tldr, prefs = _columns("tldr", split, seed), _columns("preferences", split, seed)
    posts = generate_posts(seed)[split]
    refs = [judge_breakdown(p.facts, r) for p, r in zip(posts, tldr["reference"])]
    wins = [judge_compare(p.facts, oracle_summary(p), r) for p, r in zip(posts, tldr["reference"])]
    chosen = [len(tokenize(c)) for c in prefs["chosen"]]
    rejected = [len(tokenize(r)) for r in prefs["rejected"]]
    diffs = [c - r for c, r in zip(chosen, rejected) if c != r]
    lengths, labels = chosen + rejected, [1.0] * len(chosen) + [0.0] * len(rejected)
    return {
        "reference_mean_score": statistics.fmean(r["score"] for r in refs),
        "reference_over_budget": statistics.fmean(r["over_length"] > 0 for r in refs),
        "oracle_mean_score": statistics.fmean(
            judge_score(p.facts, oracle_summary(p)) for p in posts
        ),
        "oracle_win_rate": statistics.fmean(wins),
        "label_noise_rate": 1.0 - statistics.fmean(prefs["judge_prefers_chosen"]),
        "chosen_longer_rate": statistics.fmean(d > 0 for d in diffs),
        "length_chosen_correlation": statistics.correlation(lengths, labels),
    }


SPLITS = tuple(SPLIT_SIZES)
SFT_SPLITS = ("train", "validation")

__all__ = [
    "BT_TAU",
    "LENGTH_BUDGET",
    "REFERENCE_STYLE",
    "SFT_SPLITS",
    "SPLITS",
    "Post",
    "WriterStyle",
    "candidate_style",
    "candidate_summary",
    "generate_posts",
    "judge_breakdown",
    "judge_compare",
    "judge_score",
    "load_tldr",
    "load_tldr_preferences",
    "load_tldr_sft",
    "make_post",
    "oracle_summary",
    "preference_pairs",
    "reference_summary",
    "task_statistics",
    "write_summary",
]
