"""REBEL's pairs through the online loop: hybrid and offline dataset completions aligned with their rows
(log-probs, rewards, prompts), best-versus-worst pairing, reward normalisation, and a preference source."""
import pytest
import torch

from rebel_rl import ConfigError, DataError, RebelConfig
from rebel_rl.algorithms import rebel_loss
from rebel_rl.policies.causal_lm.offline import rollout_from_text
from rebel_rl.policies.causal_lm.text import TextRollout
from rebel_rl.training.online.methods import Batch
from rebel_rl.training.online.methods.rebel import Rebel
from rebel_rl.training.online.pairs import best_worst_rows, interleave_order, normalize_rewards
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea",
           "describe a good book", "what a wonderful day"]
# A distinct written completion per row, of different lengths (so misplaced padding would show).
WRITTEN = [" great and i loved it", " sad", " happy day in the sun", " the sea was bad",
           " a wonderful book about the sun and the sea", " good"]
REJECTED = [" bad", " the food was terrible", " tired", " i", " the book was bad and sad", " sad day"]
VALUE = {text: 10.0 * (k + 1) for k, text in enumerate(WRITTEN + REJECTED)}  # reward of each written text


def lookup_reward(prompts, completions, **columns):
    """A written completion's own value; a sample's number of letters 'e' (small, never a multiple of 10)."""
    return [VALUE.get(c, c.count("e") + 0.5) for c in completions]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    rows = [{"prompt": p, "completion": w, "chosen": w, "rejected": r, "row": k}
            for k, (p, w, r) in enumerate(zip(PROMPTS, WRITTEN, REJECTED))]
    return {"model": str(save_tiny_causal_lm(root / "tiny")), "train": write_jsonl(root / "train.jsonl", rows)}


def make_trainer(files, tmp_path, reward_funcs=(lookup_reward,), preference_func=None, **overrides):
    values = dict(model_name_or_path=files["model"], dataset=files["train"], rewards=[], num_iterations=4,
                  prompts_per_iteration=4, minibatch_prompts=2, num_generations=2, max_new_tokens=6, top_k=2,
                  kl_coef=0.1, missing_eos_penalty=0.0, eval_prompts=0, lora_r=4,
                  learning_rate=1e-2, warmup_ratio=0.0,
                  lr_scheduler="constant", mixed_precision="no", progress=False, tensorboard=False, save_every=0,
                  seed=0, output_dir=str(tmp_path / "run"))
    values.update(overrides)
    return RebelTrainer(RebelConfig(**values), reward_funcs=list(reward_funcs), preference_func=preference_func)


def first_batch(trainer) -> tuple[Batch, list[int]]:
    """Run one iteration and return its batch as the objective received it, and the dataset rows used."""
    captured = []
    prepare = trainer.objective.prepare
    trainer.objective.prepare = lambda batch, policy: captured.append(batch) or prepare(batch, policy)
    indices = trainer._prompt_indices(trainer.iteration)
    trainer.step()
    return captured[0], indices


def prompt_text(trainer, batch, row) -> str:
    ids = batch.rollout.prompt_ids[row][batch.rollout.prompt_mask[row].bool()]
    return trainer.policy.tokenizer.decode(ids, skip_special_tokens=True)


@pytest.mark.parametrize("n", [2, 3])
def test_hybrid_rows_hold_each_prompts_own_dataset_completion_scored_like_a_sample(files, tmp_path, n):
    """Per prompt: n - 1 samples, then that prompt's own `completion`; its log pi_t and KL equal those of the
    (prompt, completion) pair computed on its own, and its reward is its own value. Any misalignment of the
    interleaving, the padding or the reward order breaks one of these."""
    trainer = make_trainer(files, tmp_path, pair_source="hybrid", num_generations=n)
    policy = trainer.policy
    alone = rollout_from_text(policy, PROMPTS, WRITTEN)  # each pair on its own, under pi_t (before the update)
    with torch.no_grad():
        logp, ref = policy.log_probs(alone), policy.log_probs(alone, reference=True)
    batch, indices = first_batch(trainer)
    assert len(batch.rollout) == 4 * n
    for p, index in enumerate(indices):
        rows = list(range(p * n, (p + 1) * n))
        assert all(prompt_text(trainer, batch, r) == PROMPTS[index] for r in rows)
        written = rows[-1]
        assert batch.rollout.completions[written] == WRITTEN[index]
        assert batch.score[written].item() == VALUE[WRITTEN[index]]
        assert all(batch.score[r].item() % 10 != 0 for r in rows[:-1])  # samples, not written texts
        assert batch.old_logps[written].item() == pytest.approx(logp[index].item(), abs=1e-4)
        assert batch.kl[written].item() == pytest.approx((logp - ref)[index].item(), abs=1e-4)
        assert batch.rollout.has_eos[written]
    # the dataset completion is a reward query like a sample
    assert trainer.reward_queries == 4 * n


def test_offline_pairs_are_each_prompts_chosen_and_rejected(files, tmp_path):
    trainer = make_trainer(files, tmp_path, pair_source="offline", completion_columns=["chosen", "rejected"])
    batch, indices = first_batch(trainer)
    assert batch.rollout.completions == [text for i in indices for text in (WRITTEN[i], REJECTED[i])]
    assert batch.score.tolist() == [VALUE[t] for t in batch.rollout.completions]
    assert all(prompt_text(trainer, batch, r) == PROMPTS[indices[r // 2]] for r in range(8))
    # the shaped reward regressed on: score - kl_coef * KL, row by row
    assert torch.allclose(batch.reward, batch.score - 0.1 * batch.kl)


def test_concatenated_rollouts_keep_each_rows_log_probs(files, tmp_path):
    """Parts with different prompt and completion widths: after left/right padding to a common width, every
    row's log-prob is what it was in its own part (a pad on the wrong side shifts the logits read)."""
    policy = make_trainer(files, tmp_path).policy
    short = rollout_from_text(policy, ["i feel"], [" sad"])
    long = rollout_from_text(policy, ["write one sentence about the sea", "describe a good book"],
                             [" the sea was great and i loved it", " good"])
    assert short.prompt_ids.shape[1] < long.prompt_ids.shape[1]
    merged = policy.concat([short, long])
    with torch.no_grad():
        parts = torch.cat([policy.log_probs(short), policy.log_probs(long)])
        assert torch.allclose(policy.log_probs(merged), parts, atol=1e-4)
    assert merged.completions == [" sad", " the sea was great and i loved it", " good"]


def test_interleave_order_groups_samples_and_columns_by_prompt():
    # 2 prompts, 2 samples each (rows 0-3), then column A (rows 4-5) and column B (rows 6-7)
    assert interleave_order(2, 2, 2).tolist() == [0, 1, 4, 6, 2, 3, 5, 7]


def test_missing_completion_column_and_bad_settings_are_one_line_errors(files, tmp_path):
    with pytest.raises(DataError, match="column 'reference'"):
        make_trainer(files, tmp_path, pair_source="hybrid", completion_columns=["reference"])
    with pytest.raises(ConfigError, match="must exceed"):
        RebelConfig(pair_source="hybrid", completion_columns=["a", "b"], num_generations=2).validate()
    with pytest.raises(ConfigError, match="needs algorithm rebel"):
        RebelConfig(pair_source="offline", algorithm="rloo").validate()
    # a preference alone needs no reward: `--rewards none` on the command line is an empty list
    assert RebelConfig().with_overrides({"rewards": ["none"], "preference": "tldr_judge_preference"}).validate().rewards == []


def test_best_worst_rows_pick_within_each_prompt_best_first():
    reward = torch.tensor([0.1, 0.9, 0.5, 0.2,   # prompt 0: best row 1, worst row 0
                           5.0, 7.0, 6.0, 9.0,   # prompt 1: everything beats prompt 0 (a batch-wide pick fails)
                           1.0, 1.0, 1.0, 1.0])  # prompt 2: a tie still gives two distinct rows
    assert best_worst_rows(reward, 4).tolist() == [1, 0, 7, 4, 8, 9]


def test_rebel_best_worst_loss_regresses_only_the_best_and_worst_pair():
    """The loss equals rebel_loss on each prompt's (best, worst) rows, and differs from the all-pairs loss."""
    class RowPolicy:  # log pi_theta of row k: a fixed number read from its first completion token
        def log_probs(self, rollout):
            return -0.1 * rollout.completion_ids[:, 0].float()

    n, rows = 4, 8
    rollout = TextRollout(torch.zeros(rows, 1, dtype=torch.long), torch.ones(rows, 1, dtype=torch.long),
                          torch.arange(rows)[:, None] * 3 % 7, torch.ones(rows, 1, dtype=torch.long),
                          torch.ones(rows, dtype=torch.bool), [""] * rows)
    reward = torch.tensor([0.3, 2.0, -1.0, 0.5, 1.0, 0.0, 4.0, 2.0])
    batch = Batch(rollout, torch.zeros(rows), reward, torch.zeros(rows), reward)
    config = RebelConfig(num_generations=n, pairing="best_worst", eta=0.5)
    loss, _ = Rebel(config.rebel, n, config.pairing).loss(batch, RowPolicy())
    logps = RowPolicy().log_probs(rollout)
    pick = torch.tensor([[1, 2], [6, 5]])  # (best, worst) of each prompt
    assert loss.item() == pytest.approx(rebel_loss(logps[pick], torch.zeros(2, 2), reward[pick], 0.5).item())
    everything = rebel_loss(logps.view(2, 4), torch.zeros(2, 4), reward.view(2, 4), 0.5)
    assert loss.item() != pytest.approx(everything.item())


def test_reward_normalization():
    reward = torch.tensor([1.0, 3.0, 10.0, 30.0])
    assert torch.equal(normalize_rewards(reward, 2, "none"), reward)
    per_prompt = normalize_rewards(reward, 2, "prompt")
    # each prompt's pair becomes -1/sqrt(2), +1/sqrt(2) (sample std), whatever its scale
    assert torch.allclose(per_prompt, torch.tensor([-1.0, 1.0, -1.0, 1.0]) / 2 ** 0.5, atol=1e-3)
    batch = normalize_rewards(reward, 2, "batch")
    assert batch.mean().abs() < 1e-6 and batch.std().item() == pytest.approx(1.0, abs=1e-3)
    # the reward differences within a prompt keep their scale under batch normalisation
    assert (batch[3] - batch[2]) / (batch[1] - batch[0]) == pytest.approx(10.0, rel=1e-4)


def test_best_worst_and_normalization_run_in_the_loop(files, tmp_path):
    trainer = make_trainer(files, tmp_path, num_generations=4, pairing="best_worst", reward_normalization="prompt")
    batch, _ = first_batch(trainer)
    grouped = batch.reward.view(-1, 4)
    assert torch.allclose(grouped.mean(-1), torch.zeros(4), atol=1e-5)
    assert trainer.reward_queries == 16  # every sample is scored, even if only two are regressed


def longer_wins(prompts, completions_a, completions_b, **columns):
    return [0.5 if len(a) == len(b) else float(len(a) > len(b)) for a, b in zip(completions_a, completions_b)]


def test_preference_matrix_is_aligned_with_each_prompts_completions(files, tmp_path):
    trainer = make_trainer(files, tmp_path, reward_funcs=(), preference_func=longer_wins, num_generations=3)
    batch, _ = first_batch(trainer)
    texts = batch.rollout.completions
    matrix = batch.extra["preference"].view(-1, 3, 3)
    for p in range(4):
        for i in range(3):
            for j in range(3):
                expected = 0.5 if i == j else longer_wins([], [texts[3 * p + i]], [texts[3 * p + j]])[0]
                assert matrix[p, i, j].item() == expected
    assert batch.score.abs().sum() == 0  # no reward: the preference alone trains
    assert trainer.reward_queries == 4 * 3 * 2  # 3 pairs per prompt, two completions each


def more_e_wins(prompts, completions_a, completions_b, **columns):
    return [float(a.count("e") > b.count("e")) + 0.5 * (a.count("e") == b.count("e"))
            for a, b in zip(completions_a, completions_b)]


def test_rebel_on_a_preference_learns_what_it_prefers(files, tmp_path):
    """Preferring the completion with more letters 'e' raises their count, as the reward count_e does for
    REBEL itself (with a sign error the count falls)."""
    trainer = make_trainer(files, tmp_path, reward_funcs=(), preference_func=more_e_wins, num_generations=4,
                           num_iterations=8, prompts_per_iteration=4, minibatch_prompts=4, kl_coef=0.0,
                           eval_prompts=6, eval_dataset=files["train"], eval_split="train",
                           eval_rewards=["tests/test_pairs.py:count_e"])
    summary = trainer.train()
    before, after = summary["before"]["rewards"]["count_e"], summary["after"]["rewards"]["count_e"]
    assert after > before + 1.5, (before, after)


def count_e(prompts, completions, **columns):
    return [float(c.count("e")) for c in completions]
