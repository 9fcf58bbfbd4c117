"""A*-PO's pure functions (algorithms/apo.py): the regression loss and the optimal value V*."""
import math
from types import SimpleNamespace

import pytest
import torch

import rebel_rl
from rebel_rl.algorithms import apo_loss, optimal_value


def test_apo_loss_matches_hand_computed_value_on_three_rows():
    logps = torch.tensor([-1.0, -2.0, -3.0])
    ref = torch.tensor([-1.5, -2.0, -2.0])
    reward = torch.tensor([1.0, 0.0, 2.0])
    vstar = torch.tensor([0.5, 0.5, 1.0])
    # beta2 * log-ratio = [0.05, 0, -0.1]; advantage = [0.5, -0.5, 1.0]
    # residuals = [-0.45, 0.5, -1.1]
    expected = (0.45 ** 2 + 0.5 ** 2 + 1.1 ** 2) / 3
    loss = apo_loss(logps, ref, reward, vstar, beta2=0.1)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_apo_loss_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="vstar"):
        apo_loss(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(2), beta2=0.1)


def test_row_above_vstar_pushes_log_pi_up_and_below_pushes_it_down():
    logps = torch.tensor([-2.0, -2.0], requires_grad=True)
    ref = torch.tensor([-2.0, -2.0])
    apo_loss(logps, ref, torch.tensor([1.0, -1.0]), torch.zeros(2), beta2=0.5).backward()
    # d/dlogp of mean (0.5 * 0 - A)^2 = 2 * 0.5 * (-A) / 2: negative for A = 1, positive for A = -1
    assert logps.grad.tolist() == pytest.approx([-0.5, 0.5])


def test_optimal_value_matches_hand_computed_values():
    rewards = torch.tensor([[0.0, math.log(3.0)], [1.0, 1.0], [0.0, 2 * math.log(3.0)]])
    # beta1 = 1: log mean(1, 3) = log 2; a constant row gives the constant
    assert optimal_value(rewards[:2], beta1=1.0).tolist() == pytest.approx([math.log(2.0), 1.0])
    # beta1 = 2: 2 * log mean(exp(0), exp(log 3)) = 2 log 2
    assert optimal_value(rewards[2:], beta1=2.0).item() == pytest.approx(2 * math.log(2.0))


def test_optimal_value_tends_to_max_for_small_beta1_and_to_mean_for_large():
    rewards = torch.tensor([[1.0, 2.0, 5.0]])
    assert optimal_value(rewards, beta1=1e-3).item() == pytest.approx(5.0, abs=2e-3)
    assert optimal_value(rewards, beta1=1e4).item() == pytest.approx(8.0 / 3.0, abs=1e-3)


def test_optimal_value_is_stable_for_large_rewards():
    values = optimal_value(torch.tensor([[1000.0, 999.0], [1000.0, 1000.0]]), beta1=0.01)
    assert torch.isfinite(values).all()
    assert values.tolist() == pytest.approx([1000.0 + 0.01 * math.log(0.5), 1000.0], abs=1e-9)
    one = optimal_value(torch.tensor([[1000.0, 999.0]]), beta1=1.0).item()
    assert one == pytest.approx(1000.0 + math.log((1 + math.exp(-1)) / 2), abs=1e-9)


def test_optimal_value_rejects_a_non_positive_beta1():
    with pytest.raises(ValueError, match="beta1"):
        optimal_value(torch.zeros(1, 2), beta1=0.0)


def test_the_losses_are_exported_from_the_package():
    assert rebel_rl.apo_loss is apo_loss and rebel_rl.optimal_value is optimal_value


def _apo_objective(score_calls: list):
    from rebel_rl.training.online.methods.apo import Apo, ApoOptions

    def score(prompts, rollout, columns):
        score_calls.append((list(prompts), columns))
        return torch.tensor(rollout.rewards)

    return Apo(ApoOptions(beta1=1.0, vstar_samples=2), 1, score)


class _Policy:
    """Samples pi_ref 'completions' whose scores are 0 and log 3 (so V* = log 2 at beta1 = 1)."""

    def __init__(self) -> None:
        self.calls = []

    def sample(self, prompts, n, reference=False):
        self.calls.append((list(prompts), n, reference))
        return SimpleNamespace(rewards=[0.0, math.log(3.0)] * len(prompts))


def _batch(prompts):
    return SimpleNamespace(prompts=prompts, columns={"answer": [p.upper() for p in prompts]},
                           score=torch.zeros(len(prompts)), extra={})


def test_apo_objective_samples_pi_ref_once_per_new_prompt_and_a_restored_cache_skips_it():
    score_calls, policy = [], _Policy()
    objective = _apo_objective(score_calls)
    batch = _batch(["a", "b", "a"])
    stats = objective.prepare(batch, policy)
    assert policy.calls == [(["a", "b"], 2, True)] and stats["apo/new_prompts"] == 2.0
    assert score_calls == [(["a", "a", "b", "b"], {"answer": ["A", "A", "B", "B"]})]
    assert batch.extra["vstar"].tolist() == pytest.approx([math.log(2.0)] * 3)
    assert objective.reward_queries(3) == 3 + 4
    restored = _apo_objective(score_calls)
    restored.load_state_dict(objective.state_dict())
    restored.prepare(_batch(["b", "c"]), policy)
    assert policy.calls[1:] == [(["c"], 2, True)]  # "b" came from the checkpoint
    assert restored.reward_queries(2) == 2 + 2


def test_the_defaults_are_the_papers_published_setting():
    # ZhaolinGao/A-PO (the paper's code), scripts/apo_gsm8k.sh and scripts/apo_math.sh:
    # beta1=0.5 (V*'s temperature), beta2=1e-3 (the log-ratio's weight), num_gen_to_use=8
    from rebel_rl.training.online.methods.apo import ApoOptions

    options = ApoOptions()
    assert (options.beta1, options.beta2, options.vstar_samples) == (0.5, 1e-3, 8)


def test_apo_options_and_normalization_are_checked():
    from rebel_rl import ConfigError, RebelConfig

    with pytest.raises(ConfigError, match="beta2"):
        RebelConfig(algorithm="apo", beta2=0.0, rewards=["length"]).validate()
    with pytest.raises(ConfigError, match="vstar_samples"):
        RebelConfig(algorithm="apo", vstar_samples=0, rewards=["length"]).validate()
    with pytest.raises(ConfigError, match="apo regresses the raw score"):
        RebelConfig(algorithm="apo", reward_normalization="prompt", rewards=["length"]).validate()
