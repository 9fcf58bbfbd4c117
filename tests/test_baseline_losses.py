"""Baselines' pure losses: exact values and the properties a wrong sign, baseline or mask would break."""
import pytest
import torch

from rebel_rl.algorithms import (gae, policy_gradient_loss, ppo_policy_loss, ppo_value_loss, rloo_advantages,
                                 token_rewards, update_moving_baseline, whiten)


def test_rloo_baseline_excludes_the_sample_itself():
    rewards = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.0, 2.0]])
    # sample 0 of prompt 0: 3 - mean(0, 0) = 3 (a baseline including itself would give 3 - 1 = 2)
    expected = torch.tensor([[3.0, -1.5, -1.5], [0.0, -1.5, 1.5]])
    assert torch.allclose(rloo_advantages(rewards), expected)
    # k = 2: each sample's baseline is exactly the other sample's reward
    assert torch.allclose(rloo_advantages(torch.tensor([[1.0, 0.25]])), torch.tensor([[0.75, -0.75]]))


def test_rloo_rejects_a_single_sample():
    with pytest.raises(ValueError, match="k >= 2"):
        rloo_advantages(torch.ones(4, 1))


def test_policy_gradient_loss_sign_and_detach():
    logps = torch.tensor([-1.0, -2.0], requires_grad=True)
    advantages = torch.tensor([2.0, -1.0], requires_grad=True)
    loss = policy_gradient_loss(logps, advantages)
    assert loss.item() == pytest.approx(-(2.0 * -1.0 + -1.0 * -2.0) / 2)
    loss.backward()
    # descending the loss raises log pi of the positive-advantage sample and lowers the other
    assert logps.grad.tolist() == pytest.approx([-1.0, 0.5])
    assert advantages.grad is None


def test_moving_baseline():
    assert update_moving_baseline(None, torch.tensor([1.0, 3.0]), 0.9) == pytest.approx(2.0)
    assert update_moving_baseline(2.0, torch.tensor([4.0, 6.0]), 0.9) == pytest.approx(0.9 * 2 + 0.1 * 5)


def test_token_rewards_put_the_score_on_the_last_completion_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0]])
    kl = torch.tensor([[0.1, 0.2, 0.3, 9.0], [0.5, 9.0, 9.0, 9.0]])
    rewards = token_rewards(torch.tensor([1.0, -2.0]), kl, mask, kl_coef=0.5)
    expected = torch.tensor([[-0.05, -0.1, -0.15 + 1.0, 0.0], [-0.25 - 2.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(rewards, expected)
    # the per-token rewards sum to the sequence-level score - kl_coef * KL used by REBEL/RLOO
    assert torch.allclose(rewards.sum(-1), torch.tensor([1.0, -2.0]) - 0.5 * (kl * mask).sum(-1))


def test_gae_matches_hand_computation():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 0.4, 7.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    # lam = gamma = 1: A_t = (sum of rewards from t on) - V_t; the padded value 7 must not leak in
    assert torch.allclose(advantages, torch.tensor([[0.5, 0.8, 0.6, 0.0]]))
    assert torch.allclose(returns, torch.tensor([[1.0, 1.0, 1.0, 0.0]]))
    advantages, _ = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    d2, d1, d0 = 1.0 - 0.4, 0.4 - 0.2, 0.2 - 0.5
    assert torch.allclose(advantages[0, :3], torch.tensor([d0 + 0.5 * (d1 + 0.5 * d2), d1 + 0.5 * d2, d2]))


def test_whiten_is_masked():
    values = torch.tensor([[1.0, 3.0, 100.0]])
    out = whiten(values, torch.tensor([[1, 1, 0]]))
    assert torch.allclose(out, torch.tensor([[-1.0, 1.0, 0.0]]), atol=1e-4)


def test_ppo_ratio_one_gives_the_plain_policy_gradient():
    old = torch.tensor([[-1.0, -2.0]])
    logps = old.clone().requires_grad_(True)
    advantages = torch.tensor([[1.0, -1.0]])
    loss, ratio, clipped = ppo_policy_loss(logps, old, advantages, torch.ones(1, 2), clip_range=0.2)
    assert torch.equal(ratio.detach(), torch.ones(1, 2)) and clipped.item() == 0.0
    loss.backward()
    assert logps.grad[0].tolist() == pytest.approx([-0.5, 0.5])


@pytest.mark.parametrize("advantage,log_ratio,engaged", [
    (1.0, 0.1, False),                    # ratio 1.105 inside [0.8, 1.2]
    (1.0, 0.3, True),                     # ratio 1.35 > 1.2 with A > 0: no more push up
    (-1.0, 0.3, False),                   # A < 0 and ratio above: the unclipped term is the max
    (-1.0, -0.4, True),                   # ratio 0.67 < 0.8 with A < 0: no more push down
])
def test_ppo_clipping_engages_beyond_one_plus_minus_epsilon(advantage, log_ratio, engaged):
    old = torch.tensor([[-1.0]])
    logps = (old + log_ratio).requires_grad_(True)
    loss, _, clipped = ppo_policy_loss(logps, old, torch.tensor([[advantage]]), torch.ones(1, 1), clip_range=0.2)
    loss.backward()
    assert clipped.item() == float(engaged)
    assert (logps.grad.abs().item() == 0.0) == engaged


def test_ppo_value_loss_clips_around_the_old_values():
    old, returns, mask = torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1)
    values = torch.tensor([[0.5]], requires_grad=True)
    loss = ppo_value_loss(values, old, returns, mask, clip_range_value=0.2)
    # clipped value 0.2: max((0.5-1)^2, (0.2-1)^2) = 0.64, halved; the clipped branch has no gradient
    assert loss.item() == pytest.approx(0.32)
    loss.backward()
    assert values.grad.item() == 0.0


def test_ppo_masked_tokens_do_not_count():
    old = torch.zeros(1, 3)
    logps = torch.zeros(1, 3, requires_grad=True)
    loss, _, _ = ppo_policy_loss(logps, old, torch.tensor([[1.0, 1.0, 50.0]]), torch.tensor([[1, 1, 0]]), 0.2)
    loss.backward()
    assert loss.item() == pytest.approx(-1.0)
    assert logps.grad[0, 2].item() == 0.0
