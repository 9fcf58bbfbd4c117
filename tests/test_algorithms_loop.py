"""Every algorithm through the one online loop: learning, PPO's ratio and clipping, shared rollouts."""
from pathlib import Path

import pytest
import torch

import rebel_rl
from rebel_rl import RebelConfig
from rebel_rl.config.algorithms import algorithm_names, algorithm_spec
from rebel_rl.algorithms import ppo
from rebel_rl.training.online.loop import RebelTrainer
from tiny import save_tiny_causal_lm, write_jsonl

TRAIN = ["the movie was", "tell me about your weekend", "i feel", "write one sentence about the sea"]
HELD_OUT = ["describe a good book", "what a wonderful day", "the food was", "summarize the post"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("algorithms")
    return {
        "model": str(save_tiny_causal_lm(root / "tiny")),
        "train": write_jsonl(root / "train.jsonl", [{"prompt": p} for p in TRAIN]),
        "held_out": write_jsonl(root / "held_out.jsonl", [{"prompt": p} for p in HELD_OUT]),
    }


def count_e(prompts, completions, **kwargs):
    return [float(c.count("e")) for c in completions]


def make_config(files, run_dir: Path, **overrides) -> RebelConfig:
    values = dict(model_name_or_path=files["model"], dataset=files["train"], eval_dataset=files["held_out"], rewards=[],
                  num_iterations=8, prompts_per_iteration=4, minibatch_prompts=4, num_generations=4, max_new_tokens=8,
                  num_epochs=1, top_k=2, kl_coef=0.0, eval_prompts=4, eval_batch_size=16, lora_r=4,
                  learning_rate=1e-2, warmup_ratio=0.0, lr_scheduler="constant", mixed_precision="no",
                  progress=False, tensorboard=False, save_every=0, seed=0, output_dir=str(run_dir),
                  missing_eos_penalty=0.0, eval_generations=None)  # the thresholds were set with these
    values.update(overrides)
    return RebelConfig(**values)


# every registered algorithm that trains a causal LM, read from the registry (a new one joins here)
# (REFUEL needs an environment: tests/test_refuel_objective.py trains it)
TEXT_ALGORITHMS = [name for name in algorithm_names() if "causal_lm" in algorithm_spec(name).policy_kinds
                   and algorithm_spec(name).rollout != "branched"]


# A*-PO's default beta2 (1e-3, the paper's, for 0/1 rewards) makes its regression target
# (r - V*) / beta2 thousands here, where rewards count letters (2-10): its step is then
# too noisy to climb reliably in 8 iterations (+1.1 to +2.1 with float rounding alone).
STEP_SIZES = {"apo": dict(beta2=0.5)}


@pytest.mark.parametrize("algorithm", TEXT_ALGORITHMS)
def test_every_algorithm_raises_the_reward(files, tmp_path, algorithm):
    """Reward = count of 'e'; with top_k=2 every algorithm climbs from about 2 to 6-10 in 8 iterations
    (a flipped sign or advantage drives it towards 0 instead)."""
    summary = rebel_rl.train(make_config(files, tmp_path / "run", algorithm=algorithm,
                                         **STEP_SIZES.get(algorithm, {})), reward_funcs=[count_e])
    assert summary["after"]["reward"] > summary["before"]["reward"] + 2.0, summary


def test_ppo_ratio_is_exactly_one_on_the_first_minibatch_of_each_iteration(files, tmp_path, monkeypatch):
    seen = []
    original = ppo.ppo_policy_loss

    def spy(logps, old_logps, advantages, mask, clip_range):
        loss, ratio, clipped = original(logps, old_logps, advantages, mask, clip_range)
        seen.append((ratio.detach()[mask.bool()] - 1).abs().max().item())
        return loss, ratio, clipped

    monkeypatch.setattr(ppo, "ppo_policy_loss", spy)
    config = make_config(files, tmp_path / "run", algorithm="ppo", num_iterations=2, num_epochs=2, minibatch_prompts=2,
                         eval_prompts=0)
    rebel_rl.train(config, reward_funcs=[count_e])
    per_iteration = 2 * 2  # epochs x minibatches
    assert len(seen) == 2 * per_iteration
    for first in (0, per_iteration):
        assert seen[first] < 1e-5, seen
    # after an optimizer step the ratio moves (so the check above is not vacuous)
    assert max(seen[1:per_iteration]) > 1e-3, seen


def test_rebel_and_ppo_see_identical_rollouts_for_one_seed(files, tmp_path):
    rollouts = {}
    for algorithm in ("rebel", "ppo", "rloo"):
        trainer = RebelTrainer(make_config(files, tmp_path / algorithm, algorithm=algorithm, eval_prompts=0).validate(
            require_rewards=False), reward_funcs=[count_e])
        sample = trainer.policy.sample
        captured = []
        trainer.policy.sample = lambda *a, **k: captured.append(sample(*a, **k)) or captured[-1]
        trainer.step()
        rollouts[algorithm] = captured[0]
    for other in ("ppo", "rloo"):
        assert torch.equal(rollouts["rebel"].completion_ids, rollouts[other].completion_ids)
        assert rollouts["rebel"].completions == rollouts[other].completions


def test_reinforce_baseline_comes_from_earlier_iterations(files, tmp_path):
    trainer = RebelTrainer(make_config(files, tmp_path / "run", algorithm="reinforce", eval_prompts=0,
                                       baseline_decay=0.5).validate(require_rewards=False), reward_funcs=[count_e])
    first, _ = trainer.step()
    second, _ = trainer.step()
    # iteration 1 uses its own mean; iteration 2 the average of that and iteration 1's mean reward
    assert first["baseline"] == pytest.approx(first["rlhf_reward"], abs=1e-5)
    assert second["baseline"] == pytest.approx(first["rlhf_reward"], abs=1e-5)
    assert trainer.objective.baseline == pytest.approx(0.5 * first["rlhf_reward"] + 0.5 * second["rlhf_reward"], abs=1e-5)


@pytest.mark.parametrize("algorithm", ["rebel", "ppo", "rloo", "iterative_dpo", "grpo"])
def test_update_forward_as_old_logps_matches_a_separate_pass(files, tmp_path, algorithm):
    """One epoch in one minibatch: log pi_t comes from the update's own forward instead of a separate
    no-grad pass, one forward fewer per iteration. Every logged number (KL, loss, gradient norm, reward)
    and the trained weights match the separate pass, so the reused forward is the same pi_t (temperature,
    masks, rows in the same order) and the losses see the same log pi_theta."""
    runs = {}
    for reuse in (True, False):
        trainer = RebelTrainer(make_config(files, tmp_path / f"{reuse}", algorithm=algorithm, eval_prompts=0,
                                           kl_coef=0.1).validate(require_rewards=False), reward_funcs=[count_e])
        assert trainer.update_forward_gives_old_logps  # one epoch, minibatch_prompts == prompts_per_iteration
        trainer.update_forward_gives_old_logps = reuse
        forwards = []
        token_log_probs = trainer.policy.token_log_probs
        trainer.policy.token_log_probs = lambda rollout, **k: forwards.append(k.get("reference", False)) or \
            token_log_probs(rollout, **k)
        metrics = [trainer.step()[0] for _ in range(3)]
        weights = {k: v.detach().clone() for k, v in trainer.policy.model.named_parameters() if v.requires_grad}
        runs[reuse] = metrics, weights, forwards
    (reused, reused_weights, reused_forwards), (separate, separate_weights, separate_forwards) = runs[True], runs[False]
    assert reused_forwards.count(False) == 3 and separate_forwards.count(False) == 6  # policy forwards
    assert reused_forwards.count(True) == separate_forwards.count(True) == 3  # pi_ref passes
    for a, b in zip(reused, separate):
        for key in ("kl", "loss", "grad_norm", "reward", "rlhf_reward"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-5), (key, a[key], b[key])  # float32 rounding
    assert separate[0]["grad_norm"] > 0 and abs(separate[-1]["kl"]) > 1e-4  # not vacuous: it trains and drifts
    for name, value in separate_weights.items():
        torch.testing.assert_close(reused_weights[name], value, rtol=1e-3, atol=1e-5)  # steps of ~1e-2 each


def test_several_minibatches_keep_the_separate_old_logps_pass(files, tmp_path):
    """Where a later minibatch's forward would run after an optimizer step, log pi_t is recomputed once."""
    config = make_config(files, tmp_path / "run", minibatch_prompts=2, eval_prompts=0)
    assert not RebelTrainer(config.validate(require_rewards=False), reward_funcs=[count_e]).update_forward_gives_old_logps
    config = make_config(files, tmp_path / "run2", num_epochs=2, eval_prompts=0)
    assert not RebelTrainer(config.validate(require_rewards=False), reward_funcs=[count_e]).update_forward_gives_old_logps


def test_apo_computes_vstar_once_per_prompt_and_regresses_onto_score_minus_vstar(files, tmp_path):
    """A*-PO: pi_ref is sampled vstar_samples times per distinct prompt, only the first time the
    prompt is seen; V* is optimal_value of those samples' scores; the first loss (pi_t = pi_ref, so
    the log-ratio is 0) is mean (score - V*)^2; the V* queries count as reward queries."""
    from rebel_rl.algorithms import optimal_value

    config = make_config(files, tmp_path / "run", algorithm="apo", num_generations=1,
                         prompts_per_iteration=2, minibatch_prompts=2, num_iterations=3,
                         eval_prompts=0, vstar_samples=3, beta1=0.5, log_completions=2)
    trainer = RebelTrainer(config.validate(require_rewards=False), reward_funcs=[count_e])
    calls, sample = [], trainer.policy.sample

    def spy(prompts, n, **kwargs):
        rollout = sample(prompts, n, **kwargs)
        if kwargs.get("reference"):
            calls.append((list(prompts), n, rollout))
        return rollout

    trainer.policy.sample = spy
    steps = [trainer.step() for _ in range(3)]
    # the third iteration starts a second pass over the 4 prompts: no new V*
    assert [m["apo/new_prompts"] for m, _ in steps] == [2.0, 2.0, 0.0]
    seen = [p for prompts, _, _ in calls for p in prompts]
    assert sorted(seen) == sorted(TRAIN) and all(n == 3 for _, n, _ in calls)
    for prompts, _, rollout in calls:
        score = torch.tensor(count_e(None, rollout.completions))
        score -= config.missing_eos_penalty * (~rollout.has_eos).float().cpu()
        expected = optimal_value(score.view(-1, 3), 0.5)
        cached = [trainer.objective.vstar[p] for p in prompts]
        assert cached == pytest.approx(expected.tolist(), rel=1e-5)
    metrics, samples = steps[0]
    residuals = [(s["reward"] - trainer.objective.vstar[s["prompt"]]) ** 2 for s in samples]
    assert metrics["loss"] == pytest.approx(sum(residuals) / 2, rel=1e-4, abs=1e-6)
    assert trainer.reward_queries == 3 * 2 + 4 * 3
    assert trainer.objective.state_dict() == {"vstar": trainer.objective.vstar}
