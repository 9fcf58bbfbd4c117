"""REBEL on a tabular softmax policy over K responses, with exact expectations instead of samples.

Used to check the preference variant (tests/test_rebel_preferences.py) and to draw its dynamics on
rock-paper-scissors (benchmarks/rps_self_play.py). One iteration minimises, to convergence, the
expected `rebel_preference_loss` over pairs (y, y') with y ~ pi_t and y' ~ `opponent` (default pi_t
too, as when both completions are sampled; a one-hot opponent is a fixed dataset response, as in
hybrid pairs), each pair weighted by its probability.
"""
from __future__ import annotations

import torch

from .rebel import rebel_preference_loss


def tabular_preference_step(old_logp: torch.Tensor, preferences: torch.Tensor, eta: float,
                            opponent: torch.Tensor | None = None) -> torch.Tensor:
    """log pi_{t+1} (K,) minimising the exact expected REBEL preference loss from log pi_t
    `old_logp`.

    `preferences` (K, K): [a, b] = P(a > b), with P(a > b) + P(b > a) = 1. Minimised with L-BFGS
    over the softmax logits, in float64, started from pi_t.
    """
    old_logp = old_logp.double()
    preferences = preferences.double()
    k = old_logp.shape[0]
    first, second = torch.meshgrid(torch.arange(k), torch.arange(k), indexing="ij")
    first, second = first.flatten(), second.flatten()
    opponent = old_logp.exp() if opponent is None else opponent.double()
    weights = old_logp.exp()[first] * opponent[second]
    pair_prefs = torch.stack(
        [
            torch.stack(
                [torch.full_like(preferences[first, second], 0.5), preferences[first, second]], -1
            ),
            torch.stack(
                [preferences[second, first], torch.full_like(preferences[first, second], 0.5)], -1
            ),
        ],
        -2,
    )  # (K*K, 2, 2)
    theta = old_logp.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [theta],
        lr=1,
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=1e-15,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        logp = torch.log_softmax(theta, -1)
        pair_logps = torch.stack([logp[first], logp[second]], -1)
        pair_old = torch.stack([old_logp[first], old_logp[second]], -1)
        terms = rebel_preference_loss(pair_logps, pair_old, pair_prefs, eta, reduction="none")[:, 0]
        loss = (weights * terms).sum()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    return torch.log_softmax(theta.detach(), -1)


def preference_self_play(
    preferences: torch.Tensor, pi0: torch.Tensor, eta: float, iterations: int
) -> torch.Tensor:
    """The iterates pi_0 .. pi_T (T+1, K) of REBEL with both responses of a pair drawn from pi_t."""
    logp = torch.log(pi0.double() / pi0.sum())
    iterates = [logp.exp()]
    for _ in range(iterations):
        logp = tabular_preference_step(logp, preferences, eta)
        iterates.append(logp.exp())
    return torch.stack(iterates)
