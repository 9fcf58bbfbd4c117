"""GRPO (algorithms/grpo.py), the worked example of docs/architecture.md: exact values on hand-made
tensors, and the registry entry that makes it a first-class algorithm of the loop."""
import pytest
import torch

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.algorithms.grpo import GROUP_STD_EPS, grpo_advantages, grpo_loss
from rebel_rl.config import algorithm_spec


def test_advantages_are_standardised_within_each_prompt_group():
    rewards = torch.tensor([[1.0, 3.0], [5.0, 5.0], [0.0, 3.0]])
    advantages = grpo_advantages(rewards)
    std = torch.tensor([2.0, 0.0, 3.0]).div(2 ** 0.5)[:, None]  # sample std of each pair
    torch.testing.assert_close(advantages, (rewards - rewards.mean(-1, keepdim=True)) / (std + GROUP_STD_EPS))
    assert advantages[1].abs().max() == 0  # equal rewards carry no signal
    assert advantages[0, 1] > 0 > advantages[0, 0]  # the better sample is pushed up
    torch.testing.assert_close(grpo_advantages(rewards, scale=False), torch.tensor([[-1.0, 1.0], [0, 0], [-1.5, 1.5]]))


def test_loss_at_ratio_one_averages_each_completion_over_its_own_tokens():
    logps = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([2.0, -1.0])
    loss, ratio, clipped = grpo_loss(logps, torch.zeros(2, 3), advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-(2.0 + -1.0) / 2)  # mean_i (1/|y_i|) sum_t -A_i * 1
    assert clipped.item() == 0 and torch.equal(ratio.detach(), torch.ones(2, 3))
    loss.backward()
    # d loss / d logp_{i,t} = -A_i / (2 |y_i|) on live tokens, 0 on masked ones (a wrong mask or length fails)
    torch.testing.assert_close(logps.grad, torch.tensor([[-1 / 3, -1 / 3, -1 / 3], [0.5, 0.0, 0.0]]))


def test_clipping_stops_the_gradient_beyond_one_plus_epsilon():
    old = torch.zeros(1, 2)
    logps = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)  # ratios 1.5 (clipped) and 1.1
    loss, _, clipped = grpo_loss(logps, old, torch.tensor([1.0]), torch.ones(1, 2), clip_range=0.2)
    loss.backward()
    assert clipped.item() == pytest.approx(0.5)
    assert logps.grad[0, 0] == 0 and logps.grad[0, 1] < 0


def test_the_registry_entry_declares_what_grpo_needs():
    spec = algorithm_spec("grpo")
    assert spec.min_generations == 2 and "diffusion" in spec.policy_kinds
    config = RebelConfig(algorithm="grpo", epsilon=0.1, scale_rewards=False).validate()
    assert (config.grpo.epsilon, config.grpo.scale_rewards) == (0.1, False)
    with pytest.raises(ConfigError, match="num_generations must be >= 2 for grpo"):
        RebelConfig(algorithm="grpo", num_generations=1).validate()
    with pytest.raises(ConfigError, match="grpo normalises rewards per prompt itself"):
        RebelConfig(algorithm="grpo", reward_normalization="prompt").validate()
    with pytest.raises(ConfigError, match="pair_source 'offline' needs algorithm rebel, got 'grpo'"):
        RebelConfig(algorithm="grpo", pair_source="offline").validate()
