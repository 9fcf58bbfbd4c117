"""REFUEL (algorithms/refuel.py): exact values on hand-made tensors, and the tabular proof that its
minimiser is the soft policy-improvement step pi_t * exp(eta * Q^{pi_t}) at the turn it is applied
to."""
import itertools

import pytest
import torch

from rebel_rl.algorithms.refuel import refuel_loss, reward_to_go

LOGPS = torch.tensor([[-0.5, -1.0], [-2.0, -0.25]])
OLD = torch.tensor([[-1.0, -0.5], [-1.0, -1.0]])
FUTURE = torch.tensor([[2.0, 0.5], [0.0, 1.0]])


def test_exact_value_of_two_prefixes():
    # prefix 0: ratios 0.5, -0.5 -> (1.0 / 0.5 - 1.5)^2 = 0.25
    # prefix 1: ratios -1.0, 0.75 -> (-1.75 / 0.5 - (-1.0))^2 = 6.25
    assert refuel_loss(LOGPS, OLD, FUTURE, 0.5).item() == pytest.approx((0.25 + 6.25) / 2)


def test_wrong_sign_of_the_future_reward_is_caught():
    # swapping each pair's future rewards: (2 + 1.5)^2 = 12.25 and (-3.5 - 1)^2 = 20.25
    swapped = refuel_loss(LOGPS, OLD, FUTURE.flip(-1), 0.5).item()
    assert swapped == pytest.approx((12.25 + 20.25) / 2)


def test_nll_term_is_added_with_its_coefficient_and_trains():
    nll = torch.tensor([2.0, 4.0], requires_grad=True)
    loss = refuel_loss(LOGPS, OLD, FUTURE, 0.5, nll_coef=0.1, nll=nll)
    assert loss.item() == pytest.approx(3.25 + 0.1 * 3.0)
    loss.backward()
    torch.testing.assert_close(nll.grad, torch.tensor([0.05, 0.05]))
    # nll is ignored at the default nll_coef = 0
    assert refuel_loss(LOGPS, OLD, FUTURE, 0.5, nll=nll).item() == pytest.approx(3.25)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="nll_coef > 0 needs nll"):
        refuel_loss(LOGPS, OLD, FUTURE, 0.5, nll_coef=0.1)
    with pytest.raises(ValueError, match="nll_coef must be >= 0"):
        refuel_loss(LOGPS, OLD, FUTURE, 0.5, nll_coef=-1.0, nll=torch.zeros(2))
    with pytest.raises(ValueError, match="n >= 2"):
        refuel_loss(LOGPS[:, :1], OLD[:, :1], FUTURE[:, :1], 0.5)
    with pytest.raises(ValueError, match="start_turn"):
        reward_to_go(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))


def test_reward_to_go_sums_from_the_branching_turn_on():
    turn_rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # a '>' instead of '>=' would give [3, 0]; from turn 0 it is the whole return
    torch.testing.assert_close(reward_to_go(turn_rewards, torch.tensor([1, 2])),
                               torch.tensor([5.0, 6.0]))
    torch.testing.assert_close(reward_to_go(turn_rewards, torch.tensor([0, 0])),
                               torch.tensor([6.0, 15.0]))


# A two-turn dialogue MDP: the policy picks a1 (2 choices), the user replies e ~ P(e|a1) (2
# replies), the policy picks a2 (2 choices) at s2 = (a1, e); rewards r1(a1) after turn 0 and
# r2(a1, e, a2) at the end. The tabular policy: softmax logits theta1 (2,) at s1 and
# theta2 (2, 2, 2) at each s2.
ETA = 0.7
P_REPLY = torch.tensor([[0.8, 0.2], [0.3, 0.7]], dtype=torch.float64)
R1 = torch.tensor([0.2, -0.1], dtype=torch.float64)
R2 = torch.tensor([[[1.0, -1.0], [0.0, 2.0]], [[0.5, 0.3], [-0.5, 1.5]]], dtype=torch.float64)
TRAJECTORIES = torch.tensor(list(itertools.product(range(2), repeat=3)))  # rows (a1, e, a2)


def _pi_t():
    generator = torch.Generator().manual_seed(3)
    return (torch.randn(2, generator=generator, dtype=torch.float64),
            torch.randn(2, 2, 2, generator=generator, dtype=torch.float64))


def _weighted(logps, old, future, weights):
    """sum_p w_p * term_p through the library's loss: scaling a row's log-probs and rewards by
    sqrt(w_p) scales its squared error by w_p, and refuel_loss averages over the P rows."""
    root = weights.sqrt()[:, None]
    return refuel_loss(root * logps, root * old, root * future, ETA) * weights.shape[0]


def _turn_pairs(old1, old2, immediate_only=False, p_reply=P_REPLY):
    """Every pair at each turn with its probability under pi_t: turn 0 pairs two whole dialogues
    from s1, turn 1 pairs two a2 at a state s2 reached by pi_t (both share r1, which cancels)."""
    a1, e, a2 = TRAJECTORIES.T
    p_traj = old1.exp()[a1] * p_reply[a1, e] * old2.exp()[a1, e, a2]
    future0 = R1[a1] if immediate_only else R1[a1] + R2[a1, e, a2]
    i, j = torch.tensor(list(itertools.product(range(8), repeat=2))).T
    turn0 = (a1[i], a1[j], future0[i], future0[j], p_traj[i] * p_traj[j])
    s2 = torch.tensor(list(itertools.product(range(2), repeat=4)))  # (a1, e, a2, a2')
    b1, f, c, d = s2.T
    visit = old1.exp()[b1] * p_reply[b1, f]
    turn1 = (s2, R1[b1] + R2[b1, f, c], R1[b1] + R2[b1, f, d],
             visit * old2.exp()[b1, f, c] * old2.exp()[b1, f, d])
    return turn0, turn1, (a1, e, a2, i, j)


def _fit(loss_fn, theta):
    optimizer = torch.optim.LBFGS(theta, lr=1, max_iter=500, tolerance_grad=1e-13,
                                  tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        return loss

    for _ in range(4):
        optimizer.step(closure)
    return [t.detach() for t in theta]


def _refuel_fit(immediate_only=False):
    logits1, logits2 = _pi_t()
    old1, old2 = logits1.log_softmax(-1), logits2.log_softmax(-1)
    turn0, turn1, _ = _turn_pairs(old1, old2, immediate_only)
    theta1, theta2 = logits1.clone().requires_grad_(True), logits2.clone().requires_grad_(True)

    def loss_fn():  # h uniform over the two turns
        new1, new2 = theta1.log_softmax(-1), theta2.log_softmax(-1)
        x, y, rx, ry, w0 = turn0
        loss0 = _weighted(torch.stack([new1[x], new1[y]], -1), torch.stack([old1[x], old1[y]], -1),
                          torch.stack([rx, ry], -1), w0)
        s2, rc, rd, w1 = turn1
        b1, f, c, d = s2.T
        loss1 = _weighted(torch.stack([new2[b1, f, c], new2[b1, f, d]], -1),
                          torch.stack([old2[b1, f, c], old2[b1, f, d]], -1),
                          torch.stack([rc, rd], -1), w1)
        return (loss0 + loss1) / 2

    theta1, theta2 = _fit(loss_fn, [theta1, theta2])
    return old1, old2, theta1.softmax(-1), theta2.softmax(-1)


def _soft_step(old1, old2):
    """Exact Q^{pi_t} and the soft policy-improvement step at both turns."""
    q2 = R2  # the last turn's Q is its reward
    q1 = R1 + (P_REPLY * (old2.exp() * q2).sum(-1)).sum(-1)  # r1 + E_e E_{a2 ~ pi_t} r2
    return (old1 + ETA * q1).softmax(-1), (old2 + ETA * q2).softmax(-1)


def test_tabular_minimiser_is_the_soft_policy_improvement_step_at_each_turn():
    old1, old2, pi1, pi2 = _refuel_fit()
    step1, step2 = _soft_step(old1, old2)
    torch.testing.assert_close(pi1, step1, rtol=0, atol=1e-6)
    torch.testing.assert_close(pi2, step2, rtol=0, atol=1e-6)
    assert (step1 - old1.exp()).abs().max() > 1e-2  # the step moved: not a trivial fit


def test_the_immediate_reward_is_the_wrong_target():
    """Regressing onto r1 alone fits pi_t * exp(eta r1): a different first-turn policy."""
    old1, old2, pi1, _ = _refuel_fit(immediate_only=True)
    torch.testing.assert_close(pi1, (old1 + ETA * R1).softmax(-1), rtol=0, atol=1e-6)
    assert (pi1 - _soft_step(old1, old2)[0]).abs().max() > 1e-2


@pytest.mark.parametrize("deterministic_user", [False, True])
def test_summing_every_remaining_turn_is_not_the_q_step(deterministic_user):
    """With log pi summed over both policy turns of each dialogue from s1 (and only turn-0 pairs),
    the first-turn policy the fit reaches is not pi_t * exp(eta Q): why only turn h's tokens count.
    With a deterministic user it is the whole-dialogue step, pi_t * exp(eta * V_soft), V_soft =
    r1 + (1/eta) log E_{a2 ~ pi_t} exp(eta r2)."""
    p_reply = torch.eye(2, dtype=torch.float64) if deterministic_user else P_REPLY
    logits1, logits2 = _pi_t()
    old1, old2 = logits1.log_softmax(-1), logits2.log_softmax(-1)
    (_, _, rx, ry, w0), _, (a1, e, a2, i, j) = _turn_pairs(old1, old2, p_reply=p_reply)
    theta1, theta2 = logits1.clone().requires_grad_(True), logits2.clone().requires_grad_(True)

    def loss_fn():
        whole = theta1.log_softmax(-1)[a1] + theta2.log_softmax(-1)[a1, e, a2]
        whole_old = old1[a1] + old2[a1, e, a2]
        return _weighted(torch.stack([whole[i], whole[j]], -1),
                         torch.stack([whole_old[i], whole_old[j]], -1),
                         torch.stack([rx, ry], -1), w0)

    theta1, _ = _fit(loss_fn, [theta1, theta2])
    q_step = (old1 + ETA * (R1 + (p_reply * (old2.exp() * R2).sum(-1)).sum(-1))).softmax(-1)
    assert (theta1.softmax(-1) - q_step).abs().max() > 1e-2
    if deterministic_user:
        v_soft = R1 + (p_reply * (old2 + ETA * R2).logsumexp(-1)).sum(-1) / ETA
        torch.testing.assert_close(theta1.softmax(-1), (old1 + ETA * v_soft).softmax(-1),
                                   rtol=0, atol=1e-6)
