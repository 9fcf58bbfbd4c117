"""Built-in task `tldr`: an offline, seeded stand-in for the REBEL paper's TL;DR summarization experiment.

A post is a short Reddit-style story in plain English with three key facts (who is involved, what the
problem is, what the poster asks) and two or three distractor sentences. Three parts play the paper's
roles: the gold judge (summarization_judge.py, GPT-4's role: decides win rates, never trains anything);
REFERENCE summaries from a noisy writer (the human TL;DRs: SFT targets and the win-rate opponent); and
PREFERENCE pairs of candidates of varied quality, labelled by the judge with Bradley-Terry noise (the
human comparisons that train the reward model and DPO). Candidates never exceed the judge's length
budget and never repeat themselves, so within the preference data longer usually means more facts:
a learned reward model is a useful proxy that also learns a length/keyword bias the judge punishes
beyond the budget. Everything is deterministic from `seed` (random.Random, never the global state).
See docs/summarization_task.md.
"""
from __future__ import annotations

import functools
import json
import math
import random
import types
from dataclasses import dataclass
from typing import Any

import datasets

from rebel_rl.tasks.summarization_judge import (  # re-exported: the task's public API in one place
    LENGTH_BUDGET, judge_breakdown, judge_compare, judge_score, task_statistics, tokenize,
)


@dataclass(frozen=True)
class Problem:
    """A problem: its summary phrase, the post sentence stating it, an elaboration, and its key words."""
    phrase: str
    sentence: str
    elaboration: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Ask:
    """What the poster asks: the phrase (ends with '?') and its key words."""
    phrase: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Detail:
    """A distractor: an irrelevant post sentence, the clause a careless summary would copy, key words."""
    sentence: str
    clause: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Subreddit:
    """One topic: the roles a post can be about, intro templates, problems and topic-specific asks."""
    roles: tuple[str, ...]
    intros: tuple[str, ...]
    problems: tuple[Problem, ...]
    asks: tuple[Ask, ...]
    pets: bool = False


P, A, D = Problem, Ask, Detail
SUBREDDITS: dict[str, Subreddit] = {
    "relationships": Subreddit(
        ("boyfriend", "girlfriend", "husband", "wife"),
        ("My {role} {name} and I have been together for {years} years .",
         "I live with my {role} {name} in a small flat ."),
        (P("never texts me back", "{name} never texts me back during the day .",
           "Sometimes I wait for hours and get no answer .", ("texts",)),
         P("forgot my birthday", "{name} forgot my birthday this year .",
           "Everyone else remembered it and sent me a card .", ("forgot", "birthday")),
         P("flirts with other people", "At parties {name} flirts with other people .",
           "It happened again last weekend right in front of me .", ("flirts",)),
         P("plays video games all night", "{name} plays video games all night .",
           "We barely talk anymore because of it .", ("video", "games"))),
        (A("should I break up ?", ("break",)), A("do they deserve another chance ?", ("chance",)),
         A("is this a red flag ?", ("red", "flag")))),
    "roommates": Subreddit(
        ("roommate", "housemate", "flatmate"),
        ("I share an apartment with my {role} {name} .",
         "My {role} {name} moved in with me {years} months ago ."),
        (P("keeps eating my food", "{name} keeps eating my food .",
           "I buy groceries every week and they are gone in two days .", ("eating", "food")),
         P("plays loud music at night", "{name} plays loud music at night .",
           "I have to wake up early for my shift .", ("loud", "music")),
         P("never pays rent on time", "{name} never pays rent on time .",
           "I end up covering the whole amount myself .", ("rent",)),
         P("leaves dirty dishes everywhere", "{name} leaves dirty dishes everywhere .",
           "The whole place smells bad now .", ("dirty", "dishes"))),
        (A("should I move out ?", ("move",)), A("how do I confront them ?", ("confront",)),
         A("should I tell the landlord ?", ("landlord",)))),
    "work": Subreddit(
        ("boss", "manager", "coworker", "supervisor"),
        ("I started a new job and my {role} is {name} .",
         "I have worked with my {role} {name} for {years} years ."),
        (P("takes credit for my ideas", "{name} takes credit for my ideas .",
           "Last month my whole project was presented as theirs .", ("credit", "ideas")),
         P("yells at me in meetings", "{name} yells at me in meetings .",
           "Everyone just looks away when it happens .", ("yells", "meetings")),
         P("ignores my emails", "{name} ignores my emails .",
           "I sent five reminders about the same thing .", ("ignores", "emails")),
         P("gives me extra tasks", "{name} gives me extra tasks every day .",
           "I stay late almost every evening .", ("extra", "tasks"))),
        (A("should I quit ?", ("quit",)), A("should I go to HR ?", ("hr",)),
         A("should I report it ?", ("report",)))),
    "pets": Subreddit(
        ("dog", "puppy", "cat", "kitten"),
        ("I adopted a {role} named {name} last year .", "We have a {role} called {name} at home ."),
        (P("scratches the furniture", "{name} scratches the furniture .",
           "The sofa is already ruined .", ("scratches", "furniture")),
         P("bites my hands", "{name} bites my hands when I play .",
           "It hurts and sometimes it bleeds .", ("bites", "hands")),
         P("refuses to eat", "{name} refuses to eat .", "The bowl stays full for days .", ("refuses",)),
         P("hides under the bed", "{name} hides under the bed all day .",
           "I only see them late at night .", ("hides", "bed"))),
        (A("should I see a vet ?", ("vet",)), A("should I call a behaviorist ?", ("behaviorist",)),
         A("how do I stop this ?", ("stop",))),
        pets=True),
    "college": Subreddit(
        ("professor", "lecturer", "advisor", "instructor"),
        ("This semester I have a {role} named {name} .",
         "I am in my second year and my {role} is {name} ."),
        (P("graded my exam unfairly", "{name} graded my exam unfairly .",
           "I got a much lower grade than my friends .", ("graded", "exam")),
         P("never answers my questions", "{name} never answers my questions .",
           "I ask after every lecture and get nothing .", ("answers", "questions")),
         P("lost my essay", "{name} lost my essay .", "It was worth half of my grade .", ("lost", "essay")),
         P("cancels class without warning", "{name} cancels class without warning .",
           "I drive an hour to campus for nothing .", ("cancels", "class"))),
        (A("should I drop the course ?", ("drop",)), A("should I email the dean ?", ("dean",)),
         A("should I file a complaint ?", ("complaint",)))),
    "family": Subreddit(
        ("mom", "dad", "sister", "brother", "aunt"),
        ("My {role} {name} lives ten minutes away from us .",
         "I have always been close with my {role} {name} ."),
        (P("reads my private messages", "{name} reads my private messages .",
           "I found out when they quoted one to me .", ("reads", "messages")),
         P("criticizes my cooking", "{name} criticizes my cooking at every dinner .",
           "Nothing I make is ever good enough .", ("criticizes", "cooking")),
         P("visits without calling first", "{name} visits without calling first .",
           "Sometimes it is very early in the morning .", ("visits", "calling")),
         P("tells my secrets to everyone", "{name} tells my secrets to everyone .",
           "Now the whole family knows about my job interview .", ("secrets",))),
        (A("should I cut contact ?", ("cut", "contact")), A("how do I set boundaries ?", ("boundaries",)),
         A("should I see a therapist ?", ("therapist",)))),
    "personalfinance": Subreddit(
        ("friend", "cousin", "neighbor", "uncle"),
        ("My {role} {name} and I have known each other for {years} years .",
         "I get along well with my {role} {name} ."),
        (P("owes me five hundred dollars", "{name} owes me five hundred dollars .",
           "It has been a year since I lent it .", ("owes", "dollars")),
         P("wants a loan from me", "{name} wants a loan from me .",
           "It is for a new truck .", ("loan",)),
         P("never splits the bill", "{name} never splits the bill when we eat out .",
           "I always end up paying for both of us .", ("splits", "bill")),
         P("wants money for a startup", "{name} wants money for a startup .",
           "It would take most of my savings .", ("startup",))),
        (A("should I take legal action ?", ("legal",)),
         A("how do I refuse politely ?", ("refuse", "politely")),
         A("should I just forgive it ?", ("forgive",)))),
    "fitness": Subreddit(
        ("trainer", "coach", "teammate"),
        ("I go to the gym with my {role} {name} .", "My {role} {name} plans all my workouts ."),
        (P("makes me lift too heavy", "{name} makes me lift too heavy .",
           "My back has been sore for weeks .", ("lift", "heavy")),
         P("skips our sessions", "{name} skips our sessions without telling me .",
           "I wait at the gym for nothing .", ("skips", "sessions")),
         P("laughs at my form", "{name} laughs at my form .",
           "Other people at the gym can hear it .", ("laughs", "form")),
         P("wants me to take supplements", "{name} wants me to take supplements .",
           "They are expensive and I do not trust them .", ("supplements",))),
        (A("should I switch programs ?", ("switch", "programs")), A("is this normal ?", ("normal",)),
         A("should I work out alone ?", ("alone",)))),
}
COMMON_ASKS = (A("am I overreacting ?", ("overreacting",)), A("should I bring it up ?", ("bring",)))
DISTRACTORS = (
    D("I work at a bakery downtown .", "I work at a bakery", ("bakery",)),
    D("My car has been making a weird noise .", "my car is making a noise", ("car", "noise")),
    D("It has been raining all week here .", "it has been raining", ("raining",)),
    D("I started learning the guitar in March .", "I am learning guitar", ("guitar",)),
    D("We painted the kitchen blue last month .", "we painted the kitchen", ("painted", "kitchen")),
    D("I have a trip to Spain next month .", "I am going to Spain", ("spain",)),
    D("My phone screen is cracked .", "my phone is cracked", ("phone", "cracked")),
    D("I usually run in the park on Saturdays .", "I run in the park", ("park",)),
    D("My grandmother taught me how to knit .", "I can knit", ("knit",)),
    D("The bus to my place is always late .", "my bus is always late", ("bus",)),
    D("I am reading a long fantasy novel .", "I am reading a novel", ("novel",)),
    D("My plants on the balcony are doing well .", "my plants are doing well", ("plants",)),
    D("I had pizza for dinner yesterday .", "I had pizza", ("pizza",)),
    D("I just got a short haircut .", "I got a haircut", ("haircut",)),
    D("My laptop is very old and slow .", "my laptop is old", ("laptop",)),
    D("There is a nice coffee shop near my place .", "there is a coffee shop nearby", ("coffee",)),
    D("I am saving up for a new bike .", "I am saving for a bike", ("bike",)),
    D("My hometown is a small town by the sea .", "my hometown is by the sea", ("hometown", "sea")),
    D("I volunteer at the library on Fridays .", "I volunteer at the library", ("library",)),
    D("My favorite color is green .", "I like green", ("green",)),
    D("I am learning to speak French .", "I am learning French", ("french",)),
    D("We watched a scary movie on Friday .", "we watched a movie", ("movie",)),
    D("I have been drinking more tea lately .", "I drink tea", ("tea",)),
    D("My apartment is very sunny .", "my apartment is sunny", ("sunny",)),
)
NAMES = ("Sam", "Alex", "Jordan", "Taylor", "Chris", "Jamie", "Morgan", "Casey", "Riley", "Drew", "Kim",
         "Robin")
PET_NAMES = ("Max", "Bella", "Luna", "Buddy", "Daisy", "Milo", "Coco", "Rocky")
YEARS = ("two", "three", "four", "six")
FEELINGS = ("It really bothers me .", "I am so tired of this .", "I have tried to be patient .",
            "This has been going on for months .", "I feel like I am going crazy .")
ASK_LEADS = ("So", "So my question is ,", "Honestly ,", "Anyway ,", "Reddit ,")
VAGUE_MAIN = "having problems with"  # what a summary says about a post whose problem it leaves out
FILLER_PREFIXES = ("long story short ,", "so basically", "ok so")
FILLER_SUFFIXES = ("and it is really getting to me", "and I do not know what to do", "please help")
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
        """The TL;DR-style prompt: subreddit line, post line, and 'TL;DR:' for the model to continue."""
        return f"SUBREDDIT: r/{self.subreddit}\nPOST: {self.text}\nTL;DR:"

    @property
    def facts(self) -> dict[str, Any]:
        """What the judge needs (the `facts` column, JSON-encoded): key words, distractors, name, post."""
        return {
            "subreddit": self.subreddit, "post": self.text, "name": self.name, "person": [self.role],
            "problem": list(self.problem.keys), "ask": list(self.ask.keys),
            "distractors": [list(d.keys) for d in self.details],
            "phrases": {"person": f"my {self.role}", "problem": self.problem.phrase, "ask": self.ask.phrase},
        }


@dataclass(frozen=True)
class WriterStyle:
    """How a noisy writer summarises: per-slot omission probabilities and error/verbosity rates."""

    omit: tuple[float, float, float]  # person (the name is used instead), problem, ask
    distractor: float  # copies one distractor clause
    filler: float  # adds a filler prefix, and (independently) a filler suffix, each with this chance
    hallucinate: float  # replaces one fact with a wrong one of the same topic
    max_tokens: int | None = None  # drop filler, then the distractor, until the summary fits


REFERENCE_STYLE = WriterStyle(omit=(0.15, 0.05, 0.35), distractor=0.2, filler=0.2, hallucinate=0.03)


def make_post(rng: random.Random) -> Post:
    """Draw one post: a topic, a role and name, a problem, an ask, two or three distractors, in order.

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
    """The ideal summary: the three key facts and nothing else, e.g. 'my roommate keeps eating my food ,
    should I move out ?' (at most 14 tokens, judge score 3.0)."""
    return f"my {post.role} {post.problem.phrase} , {post.ask.phrase}"


def write_summary(post: Post, rng: random.Random, style: WriterStyle) -> tuple[str, dict[str, Any]]:
    """Write one noisy summary of `post` in `style`; return it and what the writer did (for analysis).

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
        "detail": f", also {rng.choice(post.details).clause}" if rng.random() < style.distractor else "",
        "suffix": rng.choice(FILLER_SUFFIXES) if rng.random() < style.filler else "",
        "ask": f", {ask.phrase}" if keep[2] else "",
    }
    for optional in ("suffix", "prefix", "detail"):  # fit the cap by dropping extras, least useful first
        if style.max_tokens is None or len(tokenize(_join(parts))) <= style.max_tokens:
            break
        parts[optional] = ""
    stated = [keep[0] and wrong != "person", keep[1] and wrong != "problem", keep[2] and wrong != "ask"]
    hallucinated = wrong is not None and keep[("person", "problem", "ask").index(wrong)]
    meta = {"facts": sum(stated), "hallucinated": hallucinated, "distractor": bool(parts["detail"]),
            "filler": bool(parts["prefix"] or parts["suffix"])}
    return _join(parts), meta


def _join(parts: dict[str, str]) -> str:
    """The summary text from its non-empty parts, in order."""
    return " ".join(part for part in parts.values() if part)


def reference_summary(post: Post, rng: random.Random) -> str:
    """A human-like reference TL;DR: usually right, sometimes omits a fact, copies a detail or rambles."""
    return write_summary(post, rng, REFERENCE_STYLE)[0]


def candidate_style(rng: random.Random) -> WriterStyle:
    """A random candidate-writer style: quality q ~ U(0, 1) sets omission, distractor and error rates.

    Candidates are capped at the judge's LENGTH_BUDGET, so the preference data never shows an
    over-long (or repetitive) summary losing: the proxy gap a reward model trained on it inherits.
    """
    bad = 1.0 - rng.random()
    return WriterStyle(omit=(0.1 + 0.4 * bad, 0.05 + 0.4 * bad, 0.1 + 0.5 * bad),
                       distractor=0.05 + 0.3 * bad, filler=0.3, hallucinate=0.3 * bad,
                       max_tokens=LENGTH_BUDGET)


def candidate_summary(post: Post, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """One preference-data candidate of random quality (see candidate_style), with the writer's notes."""
    return write_summary(post, rng, candidate_style(rng))


def _rng(*parts: object) -> random.Random:
    """A generator seeded from a readable string, so every split and role gets its own stream."""
    return random.Random("tldr/" + "/".join(map(str, parts)))


@functools.lru_cache(maxsize=8)
def generate_posts(seed: int = 0) -> types.MappingProxyType[str, tuple[Post, ...]]:
    """All splits' posts for `seed` (read-only): test, validation, then train, each post text unique.

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
    posts: tuple[Post, ...], rng: random.Random, pairs_per_post: int = PAIRS_PER_POST, tau: float = BT_TAU
) -> list[dict[str, Any]]:
    """Bradley-Terry-labelled candidate pairs: chosen = a with probability sigmoid((s_a - s_b) / tau).

    Each pair holds two distinct candidates whose judge scores differ; `judge_prefers_chosen` is the
    noise-free label (False for the 'flipped' pairs), kept to measure a reward model against the judge.
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
                raise RuntimeError(f"no two candidates with different judge scores for: {post.text}")
            a_wins = rng.random() < 1.0 / (1.0 + math.exp(-(score_a - score_b) / tau))
            chosen, rejected = (a, b) if a_wins else (b, a)
            rows.append({"prompt": post.prompt, "chosen": " " + chosen, "rejected": " " + rejected,
                         "judge_prefers_chosen": a_wins == (score_a > score_b),
                         "facts": json.dumps(facts)})
    return rows


@functools.lru_cache(maxsize=8)
def _columns(kind: str, split: str, seed: int) -> dict[str, tuple]:
    """Column tuples of one dataset (`tldr`, `sft` or `preferences`) and split, cached per process."""
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
    return datasets.Dataset.from_dict({k: list(v) for k, v in _columns("tldr", split, seed).items()})


def load_tldr_sft(split: str = "train", seed: int = 0) -> datasets.Dataset:
    """`builtin:tldr_sft`: prompt-completion pairs (completion = ' ' + reference) plus facts."""
    if split not in SFT_SPLITS:
        raise KeyError(split)
    return datasets.Dataset.from_dict({k: list(v) for k, v in _columns("sft", split, seed).items()})


def load_tldr_preferences(split: str = "train", seed: int = 0) -> datasets.Dataset:
    """`builtin:tldr_preferences`: prompt, chosen, rejected (leading spaces), judge_prefers_chosen, facts."""
    return datasets.Dataset.from_dict({k: list(v) for k, v in _columns("preferences", split, seed).items()})


SPLITS = tuple(SPLIT_SIZES)
SFT_SPLITS = ("train", "validation")

__all__ = [
    "BT_TAU", "LENGTH_BUDGET", "REFERENCE_STYLE", "SFT_SPLITS", "SPLITS", "Post", "WriterStyle",
    "candidate_style", "candidate_summary", "generate_posts", "judge_breakdown", "judge_compare",
    "judge_score", "load_tldr", "load_tldr_preferences", "load_tldr_sft", "make_post", "oracle_summary",
    "preference_pairs", "reference_summary", "task_statistics", "write_summary",
]
