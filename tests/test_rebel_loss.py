"""The REBEL objective: exact values, and the tabular check that its minimiser is pi_t * exp(eta r)."""
import itertools

import pytest
import torch

from rebel_rl import rebel_loss


def test_exact_value_two_samples():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]])
    old = torch.tensor([[-1.5, -1.0], [-0.5, -1.0]])
    rewards = torch.tensor([[1.0, 0.0], [0.2, 0.7]])
    eta = 2.0
    # prompt 0: ((0.5 - (-1.0)) / 2 - 1.0)^2 = (0.75 - 1)^2 = 0.0625
    # prompt 1: ((0.0 - 0.75) / 2 - (-0.5))^2 = (-0.375 + 0.5)^2 = 0.015625
    expected = (0.0625 + 0.015625) / 2
    assert rebel_loss(logps, old, rewards, eta).item() == pytest.approx(expected, abs=1e-7)


def test_exact_value_all_pairs_three_samples():
    logps = torch.tensor([[-1.0, -2.0, -3.0]])
    old = torch.tensor([[-1.0, -1.0, -1.0]])
    rewards = torch.tensor([[3.0, 1.0, 0.0]])
    ratio = [0.0, -1.0, -2.0]
    terms = [((ratio[i] - ratio[j]) / 0.5 - (rewards[0, i] - rewards[0, j])) ** 2
             for i, j in itertools.combinations(range(3), 2)]
    # pairs (0,1): (2 - 2)^2 = 0; (0,2): (4 - 3)^2 = 1; (1,2): (2 - 1)^2 = 1
    assert [float(t) for t in terms] == [0.0, 1.0, 1.0]
    assert rebel_loss(logps, old, rewards, 0.5).item() == pytest.approx(2 / 3)


def test_sign_matters():
    """Swapping the rewards of a pair must change the loss: catches a sign flip in either difference."""
    logps = torch.tensor([[0.0, -1.0]])
    old = torch.zeros(1, 2)
    good = rebel_loss(logps, old, torch.tensor([[1.0, 0.0]]), 1.0)
    bad = rebel_loss(logps, old, torch.tensor([[0.0, 1.0]]), 1.0)
    assert good.item() == pytest.approx(0.0)
    assert bad.item() == pytest.approx(4.0)


def test_old_logps_and_rewards_are_detached():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old = torch.tensor([[-1.0, -1.0]], requires_grad=True)
    rewards = torch.tensor([[0.0, 1.0]], requires_grad=True)
    rebel_loss(logps, old, rewards, 1.0).backward()
    assert logps.grad is not None and logps.grad.abs().sum() > 0
    assert old.grad is None and rewards.grad is None


def test_shape_errors():
    with pytest.raises(ValueError, match="n >= 2"):
        rebel_loss(torch.zeros(3, 1), torch.zeros(3, 1), torch.zeros(3, 1), 1.0)
    with pytest.raises(ValueError, match="same shape"):
        rebel_loss(torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(2, 3), 1.0)


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_tabular_minimiser_is_mirror_descent_step(eta):
    """Over a softmax policy on 5 actions, minimising the loss over all action pairs (weighted by
    pi_t, as sampling would) reaches pi proportional to pi_t * exp(eta * r)."""
    torch.manual_seed(0)
    num_actions = 5
    old_logits = torch.randn(num_actions)
    old_logp = torch.log_softmax(old_logits, -1)
    r = torch.randn(num_actions)
    theta = old_logits.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([theta], lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14,
                            line_search_fn="strong_wolfe")
    pairs = torch.tensor(list(itertools.product(range(num_actions), repeat=2)))
    weights = (old_logp.exp()[pairs[:, 0]] * old_logp.exp()[pairs[:, 1]]).double()

    def closure():
        opt.zero_grad()
        logp = torch.log_softmax(theta, -1)
        per_pair = torch.stack([
            rebel_loss(logp[p].unsqueeze(0), old_logp[p].unsqueeze(0), r[p].unsqueeze(0), eta) for p in pairs
        ])
        loss = (weights * per_pair.double()).sum()
        loss.backward()
        return loss

    for _ in range(5):
        opt.step(closure)
    target = torch.softmax(old_logp + eta * r, -1)
    assert torch.allclose(torch.softmax(theta, -1), target, atol=1e-4)
    # and the fit is not trivially the starting policy
    assert not torch.allclose(old_logp.exp(), target, atol=1e-2)
