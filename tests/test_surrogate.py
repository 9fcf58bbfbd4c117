"""The clipped surrogate PPO and GRPO share (algorithms/ppo.py), and the per-prompt standardisation
GRPO and reward_normalization share: exact values on hand-made tensors, worked out by hand below."""
import math

import torch

from rebel_rl.algorithms.grpo import GROUP_STD_EPS, grpo_advantages, grpo_loss
from rebel_rl.algorithms.ppo import ppo_policy_loss
from rebel_rl.training.online.pairs import normalize_rewards

RATIO = torch.tensor([[1.5, 0.5], [1.0, 1.1]], dtype=torch.float64)
LOGPS, OLD = RATIO.log(), torch.zeros(2, 2, dtype=torch.float64)
MASK = torch.tensor([[1.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # row 1's last token is padding


def test_ppo_policy_loss_exact():
    # per token max(-A r, -A clip(r, 0.8, 1.2)): (A=1, r=1.5) -> -1.2 clipped; (A=-1, r=0.5) -> 0.8
    # clipped; (A=2, r=1) -> -2; the padded token does not count: mean over 3 tokens
    advantages = torch.tensor([[1.0, -1.0], [2.0, 1.0]], dtype=torch.float64)
    loss, ratio, clipped = ppo_policy_loss(LOGPS, OLD, advantages, MASK, clip_range=0.2)
    assert math.isclose(loss.item(), (-1.2 + 0.8 - 2.0) / 3, abs_tol=1e-12)
    assert math.isclose(clipped.item(), 2 / 3, abs_tol=1e-7)  # a float32 fraction
    torch.testing.assert_close(ratio, RATIO)


def test_grpo_loss_exact():
    # one advantage per completion, averaged over its own tokens then over completions:
    # row 0 (A=1): -1.2 (clipped) and max(-0.5, -0.8) = -0.5 -> -0.85; row 1 (A=2): -2 on one token
    loss, ratio, clipped = grpo_loss(LOGPS, OLD, torch.tensor([1.0, 2.0], dtype=torch.float64), MASK,
                                     clip_range=0.2)
    assert math.isclose(loss.item(), (-0.85 - 2.0) / 2, abs_tol=1e-12)
    assert math.isclose(clipped.item(), 1 / 3, abs_tol=1e-12)
    torch.testing.assert_close(ratio, RATIO)


def test_per_prompt_standardisation_is_one_function():
    # rewards (0, 2) per prompt: mean 1, sample std sqrt(2); (5, 5): std 0, all advantages 0
    rewards = torch.tensor([[0.0, 2.0], [5.0, 5.0]], dtype=torch.float64)
    expected = torch.tensor([[-1.0, 1.0], [0.0, 0.0]], dtype=torch.float64) / (2 ** 0.5 + 1e-4)
    assert GROUP_STD_EPS == 1e-4
    torch.testing.assert_close(grpo_advantages(rewards), expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(normalize_rewards(rewards.flatten(), 2, "prompt"), expected.flatten(),
                               rtol=0, atol=1e-12)
    batch = normalize_rewards(rewards.flatten(), 2, "batch")  # mean 3, std of (0, 2, 5, 5)
    std = torch.tensor([0.0, 2.0, 5.0, 5.0], dtype=torch.float64).std().item()
    torch.testing.assert_close(batch, (rewards.flatten() - 3.0) / (std + 1e-4), rtol=0, atol=1e-12)
