"""Issue 23, item 3: REBEL's regression is a mirror-descent oracle whatever distribution its pairs
were drawn from. On a tabular bandit (K arms, fixed rewards, pi_t a softmax table), minimising
`rebel_loss` with log pi_t the trainer's own reaches pi_t * exp(eta r) normalised, whether the pairs
come from pi_t, from a stale pi_{t-1} (async rollouts) or from a perturbed pi_t (a sampling engine
that does not match the trainer's numerics), as long as every arm is sampled: the regression's
zero-residual solution does not depend on where the pairs were drawn. A policy-gradient step on the
same stale samples without importance weights does depend on it."""
import pytest
import torch

from rebel_rl.algorithms.rebel import rebel_loss
from rebel_rl.algorithms.reinforce import policy_gradient_loss

K = 5
ETA = 0.8
GEN = torch.Generator().manual_seed(11)
REWARDS = torch.randn(K, generator=GEN, dtype=torch.float64)
LOGITS_T = torch.randn(K, generator=GEN, dtype=torch.float64)  # pi_t, the trainer's policy
LOGITS_STALE = torch.randn(K, generator=GEN, dtype=torch.float64)  # pi_{t-1}
NOISE = 0.5 * torch.randn(K, generator=GEN, dtype=torch.float64)
OLD_LOGP = LOGITS_T.log_softmax(-1)
SAMPLERS = {
    "on_policy": LOGITS_T.softmax(-1),
    "stale": LOGITS_STALE.softmax(-1),
    "tempered": (LOGITS_T / 0.5).softmax(-1),  # an engine sampling at another temperature
    "noisy_logits": (LOGITS_T + NOISE).softmax(-1),  # an engine whose logits differ
}
MIRROR_STEP = (OLD_LOGP + ETA * REWARDS).softmax(-1)


def _minimise(loss_fn):
    theta = LOGITS_T.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([theta], lr=1, max_iter=500, tolerance_grad=1e-13,
                                  tolerance_change=1e-16, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = loss_fn(theta.log_softmax(-1))
        loss.backward()
        return loss

    for _ in range(4):
        optimizer.step(closure)
    return theta.detach().softmax(-1)


def _exhaustive_fit(sampler, old_logp=OLD_LOGP):
    """Every ordered pair (a, b) as one row of rebel_loss's (P, 2) layout, weighted by
    sampler(a) * sampler(b): scaling a row's log-probs and rewards by sqrt(w) scales its squared
    error by w, so the loss is the exact expectation over pairs drawn from `sampler`."""
    a, b = torch.cartesian_prod(torch.arange(K), torch.arange(K)).T
    root = (sampler[a] * sampler[b]).sqrt()[:, None]
    rewards = torch.stack([REWARDS[a], REWARDS[b]], -1)
    old = torch.stack([old_logp[a], old_logp[b]], -1)
    return _minimise(lambda logp: rebel_loss(root * torch.stack([logp[a], logp[b]], -1),
                                             root * old, root * rewards, ETA))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_covering_sampler_gives_the_same_mirror_descent_step(name):
    pi = _exhaustive_fit(SAMPLERS[name])
    torch.testing.assert_close(pi, MIRROR_STEP, rtol=0, atol=1e-6)
    assert (MIRROR_STEP - OLD_LOGP.exp()).abs().max() > 1e-2  # the step moved


def test_the_samplers_really_differ():
    """Else the test above would prove nothing about stale or mismatched samples."""
    on_policy = SAMPLERS["on_policy"]
    for name in ("stale", "tempered", "noisy_logits"):
        assert (SAMPLERS[name] - on_policy).abs().max() > 0.04, name


def test_the_samplers_own_log_probs_would_step_from_the_sampler():
    """Why log pi_t must be the trainer's own: with the stale sampler's log-probs in its place the
    fit is the mirror step from pi_{t-1}, not from pi_t."""
    stale = SAMPLERS["stale"]
    pi = _exhaustive_fit(stale, old_logp=stale.log())
    torch.testing.assert_close(pi, (stale.log() + ETA * REWARDS).softmax(-1), rtol=0, atol=1e-6)
    assert (pi - MIRROR_STEP).abs().max() > 1e-2


def test_an_arm_never_sampled_is_left_where_pi_t_had_it():
    """Coverage matters: with arm 0 never drawn, its logit gets no gradient (the pairs only see
    logit differences among sampled arms), so the fit misses the step on it."""
    sampler = SAMPLERS["stale"].clone()
    sampler[0] = 0.0
    pi = _exhaustive_fit(sampler / sampler.sum())
    assert (pi - MIRROR_STEP).abs().max() > 1e-2
    # the sampled arms keep the step's ratios among themselves
    torch.testing.assert_close(pi[1:] / pi[1:].sum(), MIRROR_STEP[1:] / MIRROR_STEP[1:].sum(),
                               rtol=0, atol=1e-6)


def test_monte_carlo_pairs_from_a_stale_sampler_with_noisy_rewards():
    """The library's use exactly: sampled pairs as rows, one rebel_loss mean; the rewards carry
    noise, so least squares recovers the step only up to sampling error."""
    generator = torch.Generator().manual_seed(5)
    arms = torch.multinomial(SAMPLERS["stale"], 2 * 20000, replacement=True,
                             generator=generator).view(-1, 2)
    rewards = REWARDS[arms] + 0.3 * torch.randn(arms.shape, generator=generator,
                                                 dtype=torch.float64)
    pi = _minimise(lambda logp: rebel_loss(logp[arms], OLD_LOGP[arms], rewards, ETA))
    torch.testing.assert_close(pi, MIRROR_STEP, rtol=0, atol=2e-2)


def _reinforce_step(sampler, lr=1.0):
    """One exact expected policy-gradient step from pi_t on samples of `sampler`, no importance
    weights: policy_gradient_loss over the K arms with advantages K * sampler * (r - baseline)."""
    theta = LOGITS_T.clone().requires_grad_(True)
    advantages = K * sampler * (REWARDS - (sampler * REWARDS).sum())
    policy_gradient_loss(theta.log_softmax(-1), advantages).backward()
    return (theta - lr * theta.grad).detach().softmax(-1)


def test_importance_free_policy_gradient_depends_on_the_sampler():
    on_policy = _reinforce_step(SAMPLERS["on_policy"])
    for name in ("stale", "tempered", "noisy_logits"):
        assert (_reinforce_step(SAMPLERS[name]) - on_policy).abs().max() > 1e-3, name
    # while REBEL's fits from the same samplers agree to 1e-6 (above)
