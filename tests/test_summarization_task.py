"""The built-in TL;DR-like task: seeded data, disjoint splits, the gold judge, label noise, its rewards."""
import json
import random
import statistics

import pytest

from rebel_rl.errors import DataError, RewardError
from rebel_rl.rewards import BUILTIN_REWARDS, RewardSet
from rebel_rl.data.builtin import load_builtin_prompts
from rebel_rl.tasks import summarization as task
from rebel_rl.tasks.summarization_judge import LENGTH_BUDGET, fact_lexicon, judge_breakdown, tokenize


@pytest.fixture(scope="module")
def posts():
    return task.generate_posts(0)


@pytest.fixture(scope="module")
def stats():
    return task.task_statistics(0, "train")


def every_oracle_post():
    """One post per (topic, role, problem, ask) combination, with two real distractors."""
    for name, sub in task.SUBREDDITS.items():
        for role in sub.roles:
            for problem in sub.problems:
                for ask in sub.asks + task.COMMON_ASKS:
                    yield task.Post(name, role, "Sam", problem, ask, task.DISTRACTORS[:2], "")


# ---- data -----------------------------------------------------------------------------------

def test_same_seed_same_data_and_other_seed_other_data():
    fresh = task.generate_posts.__wrapped__(0)  # bypass the cache: regenerate from scratch
    assert [p.text for p in fresh["test"]] == [p.text for p in task.generate_posts(0)["test"]]
    assert task.make_post(random.Random(7)) == task.make_post(random.Random(7))
    first, again = task.load_tldr_preferences("validation"), task.load_tldr_preferences("validation")
    assert first.to_dict() == again.to_dict()
    other = task.generate_posts.__wrapped__(1)
    assert [p.text for p in other["test"]] != [p.text for p in fresh["test"]]


def test_splits_are_disjoint_and_sized(posts):
    texts = {split: {p.text for p in posts[split]} for split in task.SPLITS}
    assert {split: len(t) for split, t in texts.items()} == task.SPLIT_SIZES
    assert not texts["test"] & texts["train"] and not texts["validation"] & texts["train"]
    assert not texts["test"] & texts["validation"]
    test_prompts = set(load_builtin_prompts("tldr", "test")["prompt"])
    assert set(load_builtin_prompts("tldr_preferences", "test")["prompt"]) == test_prompts
    assert not test_prompts & set(load_builtin_prompts("tldr_preferences", "train")["prompt"])


def test_posts_are_readable_and_only_mention_their_own_facts(posts):
    lexicon = fact_lexicon()
    for post in posts["train"]:
        words = sum(token[0].isalnum() for token in post.text.split())
        assert 30 <= words <= 60, post.text
        assert post.prompt.startswith(f"SUBREDDIT: r/{post.subreddit}\nPOST: ")
        assert post.prompt.endswith("\nTL;DR:")
        facts = post.facts
        own = {facts["name"].lower(), *facts["person"], *facts["problem"], *facts["ask"]}
        own |= {word for keys in facts["distractors"] for word in keys}
        tokens = set(tokenize(post.text))
        assert (tokens & lexicon) == own, post.text  # every fact is stated, no other fact word appears


def test_dataset_formats_and_registry():
    tldr = load_builtin_prompts("tldr", "validation")
    assert tldr.column_names == ["prompt", "reference", "facts", "subreddit"] and len(tldr) == 200
    sft = load_builtin_prompts("tldr_sft", "train")
    assert sft.column_names[:2] == ["prompt", "completion"] and len(sft) == 2000
    assert sft["completion"][0] == " " + load_builtin_prompts("tldr", "train")["reference"][0]
    prefs = load_builtin_prompts("tldr_preferences", "train")
    assert prefs.column_names[:4] == ["prompt", "chosen", "rejected", "judge_prefers_chosen"]
    assert len(prefs) == 2 * 2000
    assert all(c.startswith(" ") and r.startswith(" ") for c, r in zip(prefs["chosen"], prefs["rejected"]))
    for row in prefs.select(range(200)):  # the noise-free label is the judge's own verdict
        scores = [task.judge_score(row["facts"], row[k]) for k in ("chosen", "rejected")]
        assert scores[0] != scores[1] and (scores[0] > scores[1]) == row["judge_prefers_chosen"]
    # What the preference data never shows: repetition, keyword soup, over-length summaries.
    for facts, *pair in zip(prefs["facts"][:1000], prefs["chosen"][:1000], prefs["rejected"][:1000]):
        for text in pair:
            result = judge_breakdown(facts, text)
            assert result["repeats"] == result["disfluent"] == result["over_length"] == 0, (text, result)
    with pytest.raises(DataError, match="no split 'test'.*train, validation"):
        load_builtin_prompts("tldr_sft", "test")


# ---- the judge ------------------------------------------------------------------------------

def test_every_oracle_summary_is_perfect_and_within_budget():
    for post in every_oracle_post():
        summary = task.oracle_summary(post)
        result = judge_breakdown(post.facts, summary)
        assert result["score"] == 3.0 and result["length"] <= LENGTH_BUDGET - 2, (summary, result)


def test_each_defect_lowers_the_score_on_its_own(posts):
    terms = ("hallucinated", "distractors", "repeats", "disfluent", "over_length")
    for post in posts["test"][:20]:
        facts, oracle = post.facts, task.oracle_summary(post)
        main, ask = f"my {post.role} {post.problem.phrase}", post.ask.phrase
        wrong_role = next(r for r in task.SUBREDDITS[post.subreddit].roles if r != post.role)
        defects = {  # term -> (summary with only that defect, the same summary without it)
            "hallucinated": (oracle.replace(f"my {post.role}", f"my {wrong_role}"),
                             f"{post.problem.phrase} , {ask}"),
            "distractors": (f"{main} , also {post.details[0].clause}", main),
            "repeats": (f"{main} , {main}", main),
            "disfluent": (" ".join([post.role, *post.problem.keys, *post.ask.keys]), oracle),  # keyword soup
            "over_length": (f"long story short , {main} and I do not know what to do and it is really "
                            f"getting to me , {ask}", oracle),
        }
        for term, (bad, good) in defects.items():
            result = judge_breakdown(facts, bad)
            assert result[term] and not any(result[t] for t in terms if t != term), (term, bad, result)
            assert result["score"] < task.judge_score(facts, good), (term, bad, result)
        assert task.judge_score(facts, main) == 2.0 and task.judge_score(facts, oracle) == 3.0


def test_stuffed_and_overlong_summaries_score_low(posts, stats):
    soup = [(p, " ".join([p.role, *p.problem.keys, *p.ask.keys] * 2)) for p in posts["validation"]]
    long = [(p, " ".join([task.oracle_summary(p), *(d.clause for d in p.details)]))
            for p in posts["validation"]]
    for pairs in (soup, long):
        mean = statistics.fmean(task.judge_score(p.facts, s) for p, s in pairs)
        assert mean < stats["reference_mean_score"] - 1.0


def test_judge_ranks_the_writers_outputs_sensibly(posts):
    rng, scored, lengths = random.Random(3), [], []
    for post in posts["train"][:600]:
        for _ in range(2):
            text, meta = task.candidate_summary(post, rng)
            scored.append((meta, task.judge_score(post.facts, text)))
            lengths.append(len(tokenize(text)))
    by_facts = [statistics.fmean(s for m, s in scored if m["facts"] == k) for k in range(4)]
    assert by_facts == sorted(by_facts) and by_facts[3] - by_facts[0] > 2.5
    for flag in ("hallucinated", "distractor"):
        with_flag = statistics.fmean(s for m, s in scored if m[flag])
        assert with_flag < statistics.fmean(s for m, s in scored if not m[flag]) - 0.5
    assert max(lengths) <= LENGTH_BUDGET


def test_judge_compare_is_antisymmetric(posts):
    rng = random.Random(5)
    verdicts = set()
    for post in posts["validation"][:100]:
        a, b = task.reference_summary(post, rng), task.candidate_summary(post, rng)[0]
        ab, ba = task.judge_compare(post.facts, a, b), task.judge_compare(json.dumps(post.facts), b, a)
        assert ab + ba == 1.0 and ab in (0.0, 0.5, 1.0)
        assert task.judge_compare(post.facts, a, a) == 0.5
        verdicts.add(ab)
    assert verdicts == {0.0, 0.5, 1.0}


def test_references_are_beatable_and_labels_moderately_noisy(stats):
    assert stats["oracle_mean_score"] == 3.0
    assert 1.5 < stats["reference_mean_score"] < 2.5  # imperfect, like human TL;DRs
    assert stats["oracle_win_rate"] > 0.8
    assert 0.15 <= stats["label_noise_rate"] <= 0.30
    assert stats["chosen_longer_rate"] > 0.55 and stats["length_chosen_correlation"] > 0.1


# ---- rewards --------------------------------------------------------------------------------

def test_rewards_score_strings_and_messages_and_match_the_judge():
    data = load_builtin_prompts("tldr", "test").select(range(6))
    columns = {k: data[k] for k in ("reference", "facts", "subreddit")}
    posts = task.generate_posts(0)["test"][:6]
    oracles = [" " + task.oracle_summary(p) for p in posts]
    judge = BUILTIN_REWARDS["tldr_judge"](data["prompt"], oracles, **columns)
    assert judge == [3.0] * 6
    chat = [[{"role": "assistant", "content": o}] for o in oracles]
    assert BUILTIN_REWARDS["tldr_judge"](data["prompt"], chat, **columns) == judge
    refs = BUILTIN_REWARDS["tldr_win_rate"](data["prompt"], data["reference"], **columns)
    assert refs == [0.5] * 6  # a reference ties with itself
    wins = BUILTIN_REWARDS["tldr_win_rate"](data["prompt"], oracles, **columns)
    assert wins == [task.judge_compare(f, o, r) for f, o, r in zip(data["facts"], oracles, data["reference"])]
    assert all(w >= 0.5 for w in wins)
    total, each = RewardSet(["tldr_judge", "tldr_win_rate"])(data["prompt"], oracles, columns)
    assert each["tldr_judge"].tolist() == judge and total.tolist() == [j + w for j, w in zip(judge, wins)]


def test_rewards_name_the_missing_columns():
    with pytest.raises(RewardError, match=r"tldr_judge.*facts.*builtin:tldr"):
        BUILTIN_REWARDS["tldr_judge"](["p"], ["c"], reference=["r"])
    with pytest.raises(RewardError, match=r"tldr_win_rate.*column\(s\) reference,.*builtin:tldr"):
        BUILTIN_REWARDS["tldr_win_rate"](["p"], ["c"], facts=["{}"])
    with pytest.raises(RewardError, match="column facts has 2 values for 1 completions"):
        BUILTIN_REWARDS["tldr_judge"](["p"], ["c"], facts=["{}", "{}"])
