"""REFUEL as an algorithm (training/online/methods/refuel.py) on branched multi-turn rollouts
(policies/multiturn.py `rollout_branches`): a prompt's n rows share their prefix ids, the mask is
exactly turn h's response, the regression target is the reward from turn h on, one training
iteration logs metrics, and what REFUEL and A*-PO cannot run is refused in one line."""
import json

import pytest
import torch

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.cli import main
from rebel_rl.algorithms import refuel as refuel_math
from rebel_rl.policies.multiturn import BranchedRollout
from rebel_rl.training.online.loop import RebelTrainer
from rebel_rl.training.online.methods import Batch
from rebel_rl.training.online.methods.refuel import Refuel, RefuelOptions
from test_multiturn_rollout import generated_turns, make_policy
from tiny import save_tiny_causal_lm, write_jsonl

PROMPTS = ["tell me about your weekend", "the movie was", "a story about a cat"]
TURNS = 3


def logged_environment(log: list):
    """A factory of deterministic 3-turn environments, each appended to `log`: the reply to turn
    k is "reply k", its reward len(text) + 100 k (so the immediate, the future and the whole
    return all differ, and a prompt's continuations differ in their rewards)."""

    class Stepped:
        def __init__(self):
            self.rewards = []
            log.append(self)

        def reset(self, row):
            return []

        def step(self, text):
            k = len(self.rewards)
            self.rewards.append(float(len(text) + 100 * k))
            done = k + 1 == TURNS
            replies = [] if done else [{"role": "user", "content": f"reply {k}"}]
            return replies, self.rewards[-1], done

    return Stepped


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return save_tiny_causal_lm(tmp_path_factory.mktemp("lm") / "tiny", max_position_embeddings=512)


def test_rows_share_the_prefix_and_only_turn_h_is_scored(tiny_path, monkeypatch):
    policy = make_policy(tiny_path, eos_bias=3.0)  # turns of a few tokens, some ending with EOS
    torch.manual_seed(2)  # draws h = 0, 2 and 1 for the three prompts
    calls, inputs = generated_turns(policy, monkeypatch), []
    spied = policy.model.generate
    monkeypatch.setattr(policy.model, "generate",
                        lambda *a, **k: inputs.append(k["attention_mask"].sum(-1))
                        or spied(*a, **k))
    log, n = [], 2
    rollout = policy.sample_branches(PROMPTS, [{}] * 3, logged_environment(log), n,
                                     max_turns=TURNS, max_total_tokens=400)
    assert len(rollout) == 6 and len(log) == 3 + 6  # the first dialogues, then one per row
    h = rollout.branch_turns
    assert torch.equal(h.view(3, n), h.view(3, n)[:, :1].expand(3, n))  # one h per prompt
    assert (h >= 0).all() and (h < TURNS).all() and set(h.tolist()) == {0, 1, 2}
    first_branch_call = next(i for i, c in enumerate(calls) if len(c) == 6)  # every row live
    eos = policy.tokenizer.eos_token_id
    for i in range(6):
        prompt_length = int(rollout.prompt_mask[i].sum())
        start = int(inputs[first_branch_call][i]) - prompt_length  # where turn h begins
        sampled = calls[first_branch_call][i]
        turn = sampled[: sampled.index(eos) + 1] if eos in sampled else sampled
        mask = rollout.completion_mask[i].tolist()
        assert mask == [0] * start + [1] * len(turn) + [0] * (len(mask) - start - len(turn))
        assert rollout.completion_ids[i, start:start + len(turn)].tolist() == turn
        # the prefix holds exactly turns 0..h-1 and their replies, and is its prompt's mates'
        mate = i - i % n
        assert torch.equal(rollout.prompt_ids[i], rollout.prompt_ids[mate])
        assert torch.equal(rollout.completion_ids[i, :start], rollout.completion_ids[mate, :start])
        prefix = policy.tokenizer.decode(rollout.completion_ids[i, :start])
        assert [f"reply {k}" in prefix for k in range(TURNS)] == [k < h[i] for k in range(TURNS)]
        # later policy turns are attended, not scored; the rewards are the environment's own
        assert int(rollout.completion_attention_mask[i].sum()) > start + len(turn) or h[i] == 2
        assert rollout.turn_rewards[i].tolist() == log[3 + i].rewards
    assert rollout.completion_ids[0, :8].tolist() != rollout.completion_ids[3, :8].tolist()


def test_same_seed_draws_the_same_turns(tiny_path):
    policy = make_policy(tiny_path, eos_bias=6.0)
    draws = []
    for _ in range(2):
        torch.manual_seed(4)
        draws.append(policy.sample_branches(PROMPTS, [{}] * 3, logged_environment([]), 2,
                                            max_turns=TURNS, max_total_tokens=400))
    assert torch.equal(draws[0].branch_turns, draws[1].branch_turns)
    assert torch.equal(draws[0].completion_ids, draws[1].completion_ids)


def test_an_environment_that_replays_differently_is_one_line(tiny_path):
    count = iter(range(100))

    class Drifting:  # each instance opens differently: the prefix cannot be replayed
        def reset(self, row):
            return [{"role": "system", "content": f"instance {next(count)}"}]

        def step(self, text):
            return [], 1.0, True

    policy = make_policy(tiny_path, eos_bias=6.0)
    with pytest.raises(ConfigError, match="not deterministic") as error:
        policy.sample_branches(PROMPTS[:1], [{}], Drifting, 2, max_turns=2, max_total_tokens=100)
    assert "\n" not in str(error.value)


def _branched_batch(nll_coef: float = 0.0):
    """Two prefixes of two rows on hand-made tensors: turn rewards (N, 3), branch turns 1 and 0,
    turn-h token masks of 2, 1, 3 and 1 tokens; the loop's reward = return - 0.5 (a KL term)."""
    turn_rewards = torch.tensor([[1.0, 2.0, 4.0], [1.0, 3.0, 0.0], [5.0, 6.0, 0.0], [7.0, 0, 0]])
    ids = torch.zeros(4, 1, dtype=torch.long)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])
    rollout = BranchedRollout(ids, torch.ones_like(ids), torch.zeros(4, 3, dtype=torch.long), mask,
                              torch.ones(4, dtype=torch.bool), [""] * 4,
                              completion_attention_mask=torch.ones(4, 3),
                              episode_rewards=turn_rewards.sum(-1),
                              turns=torch.tensor([3, 2, 2, 1]),
                              turn_rewards=turn_rewards, branch_turns=torch.tensor([1, 1, 0, 0]))
    reward = turn_rewards.sum(-1) - 0.5
    logps = torch.tensor([[-1.0, -2.0, 0.0], [-0.5, 0, 0], [-1.0, -1.0, -1.0], [-2.0, 0, 0]])
    batch = Batch(rollout, (logps * mask).sum(-1), reward, torch.zeros(4), reward,
                  current_token_logps=(logps * mask).requires_grad_(True))
    return Refuel(RefuelOptions(nll_coef=nll_coef), 2, eta=0.5), batch


def test_the_target_is_the_reward_from_the_branch_turn_on():
    objective, batch = _branched_batch()
    metrics = objective.prepare(batch, policy=None)
    # rows 0, 1 branched at turn 1 (the prefix earned 1.0), rows 2, 3 at turn 0 (nothing)
    assert batch.extra["future_reward"].tolist() == [5.5, 2.5, 10.5, 6.5]
    assert metrics["refuel/prefix_reward"] == 0.5 and metrics["refuel/branch_turn"] == 0.5


def test_nll_coef_adds_the_best_continuations_per_token_nll():
    losses = []
    for coef in (0.0, 0.25):
        objective, batch = _branched_batch(coef)
        objective.prepare(batch, policy=None)
        losses.append(objective.loss(batch, policy=None)[0].item())
    # the best rows (future 5.5 and 10.5): log pi = -3 over 2 tokens and -3 over 3 tokens
    assert losses[1] - losses[0] == pytest.approx(0.25 * (1.5 + 1.0) / 2)
    assert losses[0] == pytest.approx(((0 - 3.0) ** 2 + (0 - 4.0) ** 2) / 2)  # ratio 1: -(dR)


# ------------------------------------------------------------------ the loop
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    rows = [{"prompt": p} for p in PROMPTS[:2] * 2]
    return write_jsonl(tmp_path_factory.mktemp("refuel") / "train.jsonl", rows)


def config_for(tiny_path, data, run_dir, **overrides) -> RebelConfig:
    values = dict(model_name_or_path=str(tiny_path), dataset=data, rewards=[], algorithm="refuel",
                  num_iterations=1, prompts_per_iteration=2, num_generations=2, max_new_tokens=6,
                  max_turns=TURNS, max_total_tokens=96, kl_coef=0.0, eval_prompts=0, lora_r=4,
                  learning_rate=1e-2, warmup_ratio=0.0, mixed_precision="no", progress=False,
                  tensorboard=False, save_every=0, seed=0, output_dir=str(run_dir))
    values.update(overrides)
    return RebelConfig(**values)


def test_one_iteration_regresses_onto_the_reward_to_go(tiny_path, data, tmp_path, monkeypatch):
    seen, log = [], []
    original = refuel_math.refuel_loss
    monkeypatch.setattr(refuel_math, "refuel_loss",
                        lambda *args: seen.append(args) or original(*args))
    trainer = RebelTrainer(config_for(tiny_path, data, tmp_path / "run", eta=0.5),
                           environment=logged_environment(log))
    rollouts, sample = [], trainer.policy.sample_branches
    monkeypatch.setattr(trainer.policy, "sample_branches",
                        lambda *a, **k: rollouts.append(sample(*a, **k)) or rollouts[-1])
    trainer.train()
    rollout, (logps, old_logps, future, eta, nll_coef, nll) = rollouts[0], seen[0]
    branch_envs = log[2:]  # after the two prompts' first dialogues
    h = rollout.branch_turns.tolist()
    expected = [sum(env.rewards[k] for k in range(h[i], len(env.rewards)))
                for i, env in enumerate(branch_envs)]
    # the update takes the prompts in a shuffled order: compare each prompt's pair
    pairs = sorted(tuple(row) for row in future.tolist())
    assert pairs == sorted([tuple(expected[:2]), tuple(expected[2:])])
    immediate = [env.rewards[h[i]] for i, env in enumerate(branch_envs)]
    assert any(a != b for a, b in zip(expected, immediate))  # a turn before the last was drawn
    assert future.shape == (2, 2) and (eta, nll_coef, nll) == (0.5, 0.0, None)
    # log pi_t is summed over turn h's tokens only (the mask): every row has some, and no more
    assert old_logps.shape == (2, 2)
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert line["refuel/future_reward"] == pytest.approx(sum(expected) / 4)
    assert line["refuel/branch_turn"] == pytest.approx(sum(h) / 4)
    assert line["environment/return"] == pytest.approx(
        sum(sum(env.rewards) for env in branch_envs) / 4)
    assert line["loss"] > 0 and line["completions/mean_length"] == pytest.approx(
        float(rollout.completion_mask.sum(-1).float().mean()))


@pytest.mark.parametrize(("overrides", "environment", "message"), [
    ({}, None, "algorithm refuel branches multi-turn episodes: set environment"),
    ({"algorithm": "apo", "num_generations": 2}, "env",
     "algorithm apo trains on single-turn samples only"),
    ({"num_generations": 1}, "env", "num_generations must be >= 2 for refuel"),
    ({"reward_normalization": "prompt"}, "env", "use reward_normalization none"),
    ({"eta": 0.0}, "env", "eta must be > 0"),  # REBEL's step size, shared
    ({"nll_coef": -1.0}, "env", "nll_coef must be >= 0"),
])
def test_refusals_are_one_line(tiny_path, data, tmp_path, overrides, environment, message):
    env = logged_environment([]) if environment else None
    with pytest.raises(ConfigError, match=message) as error:
        RebelTrainer(config_for(tiny_path, data, tmp_path / "r", **overrides),
                     reward_funcs=[lambda prompts, completions, **_: [0.0] * len(prompts)],
                     environment=env)
    assert "\n" not in str(error.value)


ENV_FILE = '''
class Stepped:
    """Two turns; turn k's reward is len(text) + 10 k."""

    def reset(self, row):
        self.turn = 0
        return []

    def step(self, text):
        self.turn += 1
        done = self.turn == 2
        replies = [] if done else [{"role": "user", "content": "more"}]
        return replies, len(text) + 10.0 * self.turn, done
'''


def test_rebel_train_runs_refuel_on_an_environment_file(tiny_path, data, tmp_path, capsys):
    (tmp_path / "stepped.py").write_text(ENV_FILE)
    args = ["train", "--model_name_or_path", str(tiny_path), "--dataset", data, "--algorithm",
            "refuel", "--num_iterations", "1", "--prompts_per_iteration", "2",
            "--num_generations", "2", "--max_new_tokens", "4", "--max_turns", "2",
            "--max_total_tokens", "48", "--lora_r", "4", "--eval_prompts", "0", "--progress",
            "false", "--tensorboard", "false", "--output_dir", str(tmp_path / "run")]
    assert main(args + ["--environment", f"{tmp_path / 'stepped.py'}:Stepped"]) == 0
    line = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert 0 <= line["refuel/branch_turn"] <= 1 and line["environment/turns"] == 2.0
    capsys.readouterr()
    assert main(args + ["--rewards", "length", "--overwrite", "true"]) == 2
    error = capsys.readouterr().err.strip()
    assert "refuel branches multi-turn episodes: set environment" in error and "\n" not in error


def test_micro_batches_keep_turn_h_and_its_log_probs(tiny_path):
    """The micro-batch narrowing (training/online/microbatch.py) drops only padding columns: turn
    h sits after its prefix, so cutting at the scored-token count would lose it."""
    from rebel_rl.training.online.microbatch import narrowed

    policy = make_policy(tiny_path, eos_bias=3.0)
    torch.manual_seed(2)
    rollout = policy.sample_branches(PROMPTS, [{}] * 3, logged_environment([]), 2,
                                     max_turns=TURNS, max_total_tokens=400)
    narrow = narrowed(rollout)
    assert narrow.completion_mask.sum() == rollout.completion_mask.sum()
    torch.testing.assert_close(policy.log_probs(narrow, reference=True),
                               policy.log_probs(rollout, reference=True))


def test_the_registry_entry_declares_what_refuel_needs():
    from rebel_rl.config import algorithm_spec

    spec = algorithm_spec("refuel")
    assert (spec.rollout, spec.min_generations, spec.label) == ("branched", 2, "REFUEL")
    assert spec.paper.endswith("ICLR 2025. arXiv 2410.04612")
    assert "eprint = {2410.04612}" in spec.bibtex and algorithm_spec("apo").rollout == "single_turn"
    assert algorithm_spec("rebel").rollout == "samples"
