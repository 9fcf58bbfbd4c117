"""Truncated importance weights (algorithms/importance.py)."""
import torch

from rebel_rl.algorithms.importance import truncated_importance_weights


def test_weight_is_one_when_sampler_is_trainer():
    logps = torch.tensor([-1.5, -0.2, -3.0])
    weights, stats = truncated_importance_weights(logps, logps.clone(), cap=2.0)
    assert torch.equal(weights, torch.ones(3))
    assert stats["tis/clipped_fraction"] == 0.0


def test_cap_truncates_and_counts():
    trainer = torch.tensor([0.0, 0.0])
    sampler = torch.tensor([-torch.log(torch.tensor(4.0)).item(), 0.0])  # ratios 4 and 1
    weights, stats = truncated_importance_weights(trainer, sampler, cap=2.0)
    assert torch.allclose(weights, torch.tensor([2.0, 1.0]))
    assert stats["tis/clipped_fraction"] == 0.5 and abs(stats["tis/weight_mean"] - 1.5) < 1e-6


def test_weights_are_detached():
    trainer = torch.tensor([-1.0, -2.0], requires_grad=True)
    weights, _ = truncated_importance_weights(trainer, torch.tensor([-1.5, -1.0]), cap=10.0)
    assert not weights.requires_grad


def test_corrected_tabular_gradient_matches_on_policy_better():
    logits = torch.tensor([0.5, -0.3, 1.0, 0.0], requires_grad=True)
    reward = torch.tensor([1.0, 0.0, -1.0, 2.0])
    stale = torch.softmax(logits.detach() + torch.tensor([0.4, -0.4, 0.3, -0.2]), 0)
    def grad(probs, weight):  # exact expectation of the score-function estimate under probs
        logp = torch.log_softmax(logits, 0)
        return torch.autograd.grad((probs * weight * reward * logp).sum(), logits)[0]

    current = torch.softmax(logits.detach(), 0)
    w, _ = truncated_importance_weights(current.log(), stale.log(), cap=100.0)
    on_policy, corrected, plain = grad(current, 1.0), grad(stale, w), grad(stale, 1.0)
    assert torch.allclose(corrected, on_policy, atol=1e-6)
    assert (plain - on_policy).norm() > 1e-2
