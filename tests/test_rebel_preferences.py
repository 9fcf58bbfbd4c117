"""REBEL with general preferences: the regression target P(y_i > y_j|x) - 1/2 (exact values), its exact
minimiser (pi_t * exp(eta * win rate against pi_t)), and the self-play dynamics on rock-paper-scissors:
the average iterate approaches the uniform Nash mixture while the last iterate keeps cycling."""
import pytest
import torch

from rebel_rl import rebel_preference_loss
from rebel_rl.algorithms.tabular import preference_self_play, tabular_preference_step

# P[a, b] = P(a > b) over rock, paper, scissors: paper beats rock, rock beats scissors, scissors beat paper.
RPS = torch.tensor([[0.5, 0.0, 1.0], [1.0, 0.5, 0.0], [0.0, 1.0, 0.5]])


def with_dominated_response(preferences: torch.Tensor, loses_with: float = 0.1) -> torch.Tensor:
    """Add a response that every other one beats with probability 1 - `loses_with`: the Nash mixture puts
    no mass on it, and a learner with a flipped sign (who prefers losing) collapses onto it."""
    k = preferences.shape[0]
    out = torch.full((k + 1, k + 1), 0.5)
    out[:k, :k] = preferences
    out[k, :k], out[:k, k] = loses_with, 1 - loses_with
    return out


def test_exact_value_two_samples_with_kl():
    logps = torch.tensor([[-1.0, -2.0], [-0.5, -0.25]])
    old = torch.tensor([[-1.5, -1.0], [-0.5, -1.0]])
    prefs = torch.tensor([[[0.5, 0.9], [0.1, 0.5]], [[0.5, 0.3], [0.7, 0.5]]])
    kl = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    # prompt 0: predicted (0.5 - (-1.0)) / 2 = 0.75; target 0.9 - 0.5 - 0.1 * (1 - 3) = 0.6 -> 0.15^2
    # prompt 1: predicted (0.0 - 0.75) / 2 = -0.375; target 0.3 - 0.5 = -0.2 -> 0.175^2
    expected = (0.15 ** 2 + 0.175 ** 2) / 2
    assert rebel_preference_loss(logps, old, prefs, 2.0, kl=kl, kl_coef=0.1).item() == pytest.approx(expected)
    # without the KL term: prompt 0's target is 0.4 -> 0.35^2
    assert rebel_preference_loss(logps, old, prefs, 2.0).item() == pytest.approx((0.35 ** 2 + 0.175 ** 2) / 2)


def test_exact_value_all_pairs_three_samples_reads_the_upper_triangle():
    logps = torch.tensor([[0.0, -1.0, -2.0]])
    old = torch.zeros(1, 3)
    prefs = torch.tensor([[[0.5, 1.0, 0.75], [0.0, 0.5, 0.5], [0.25, 0.5, 0.5]]])
    # pairs (0,1): 1 - 0.5 = 0.5 target, predicted 1 -> 0.25; (0,2): 0.25 vs 2 -> 3.0625; (1,2): 0 vs 1 -> 1
    terms = rebel_preference_loss(logps, old, prefs, 1.0, reduction="none")
    assert terms.tolist() == [[0.25, 3.0625, 1.0]]
    assert rebel_preference_loss(logps, old, prefs, 1.0).item() == pytest.approx(4.3125 / 3)


def test_old_logps_preferences_and_kl_are_detached():
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    old, kl = torch.zeros(1, 2, requires_grad=True), torch.ones(1, 2, requires_grad=True)
    prefs = torch.full((1, 2, 2), 0.5, requires_grad=True)
    rebel_preference_loss(logps, old, prefs, 1.0, kl=kl, kl_coef=0.5).backward()
    assert logps.grad.abs().sum() > 0 and old.grad is None and prefs.grad is None and kl.grad is None


@pytest.mark.parametrize("eta", [0.5, 2.0])
def test_minimiser_is_mirror_descent_on_the_win_rate_against_pi_t(eta):
    """Pairs drawn from pi_t: the exact minimiser is pi_t * exp(eta * E_{y'~pi_t} P(y > y')). A sign error
    or the transposed preference (P(y' > y)) gives pi_t * exp(-eta * ...) instead."""
    torch.manual_seed(0)
    k = 4
    upper = torch.rand(k, k).triu(1)
    prefs = upper + (1 - upper.T).tril(-1) + 0.5 * torch.eye(k)
    old_logp = torch.log_softmax(torch.randn(k), -1).double()
    new_logp = tabular_preference_step(old_logp, prefs, eta)
    win_rate = prefs.double() @ old_logp.exp()
    target = torch.softmax(old_logp + eta * win_rate, -1)
    assert torch.allclose(new_logp.exp(), target, atol=1e-6)
    assert not torch.allclose(old_logp.exp(), target, atol=1e-2)


def test_hybrid_pairs_need_the_one_half():
    """y ~ pi_t against a fixed dataset response y0: the target P(y > y0) - 1/2 gives pi_t * exp(eta * P(y > y0))
    (y0 against itself has target 0). Regressing onto P itself would have the same minimiser only when both
    responses come from pi_t; here it would favour y0 by exp(eta / 2)."""
    eta, k = 1.0, 3
    old_logp = torch.log(torch.tensor([0.5, 0.3, 0.2])).double()
    opponent = torch.tensor([0.0, 1.0, 0.0]).double()  # the dataset response is "paper"
    new_logp = tabular_preference_step(old_logp, RPS, eta, opponent=opponent)
    target = torch.softmax(old_logp + eta * RPS[:, 1].double(), -1)
    assert torch.allclose(new_logp.exp(), target, atol=1e-6)
    wrong = torch.softmax(old_logp + eta * (RPS[:, 1].double() + 0.5 * (torch.arange(k) == 1)), -1)
    assert not torch.allclose(target, wrong, atol=1e-2)


@pytest.mark.parametrize("preferences", [RPS, with_dominated_response(RPS)], ids=["rps", "rps+dominated"])
def test_average_iterate_approaches_the_nash_mixture_while_the_last_iterate_cycles(preferences):
    """Each iteration minimises the exact expected loss to convergence; after 200 iterations of eta = 0.5
    from (0.4, 0.35, 0.25) the average of the iterates is within 0.03 of the uniform mixture over rock,
    paper, scissors (and the dominated response, when present, gets almost no mass), while the last
    iterate is still far from it and every response keeps taking the lead in turn. A flipped sign sends
    the learner onto the dominated response."""
    k = preferences.shape[0]
    pi0 = torch.tensor([0.4, 0.35, 0.25] + [0.25] * (k - 3))
    iterates = preference_self_play(preferences, pi0, eta=0.5, iterations=200)
    average = iterates.mean(0)
    nash = torch.tensor([1 / 3] * 3 + [0.0] * (k - 3)).double()
    assert (average - nash).abs().max() < 0.03, average
    assert (iterates[-1] - nash).abs().max() > 0.2, iterates[-1]
    leaders = iterates[-60:, :3].argmax(-1)
    assert set(leaders.tolist()) == {0, 1, 2}, leaders
