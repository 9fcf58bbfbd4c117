"""REFUEL: REgressing the RELative FUture (Gao et al., ICLR 2025, arXiv 2410.04612): multi-turn
REBEL.

A dialogue is rolled out with pi_t up to a turn h drawn at random (uniformly over the dialogue's
turns), giving the shared prefix s_h (the prompt and every earlier policy and user turn). From s_h
two responses y_h, y'_h ~ pi_t(.|s_h) are sampled, and each dialogue is completed with pi_t to its
end; R(y_h), R(y'_h) are the rewards collected from turn h on (the "future"). REFUEL fits

    loss(theta) = mean_{s_h} [ (1/eta) * ( (log pi_theta(y_h|s_h) - log pi_t(y_h|s_h))
                                         - (log pi_theta(y'_h|s_h) - log pi_t(y'_h|s_h)) )
                               - ( R(y_h) - R(y'_h) ) ]^2

(the paper's regression; the official code, ZhaolinGao/REFUEL, regresses the ratio difference
onto eta * the reward difference: the same minimiser, its loss eta^2 times this one; in its
setting two the rewards carry the KL penalty, as ours do). log pi(y_h|s_h) sums the log-probs of
the turn-h response's own tokens only (the official code's response mask at the sampled turn):
later turns enter through their rewards, not their log-probs. Summing the log-probs of every
remaining policy turn instead regresses onto a whole-trajectory step (pi_t(tau) * exp(eta R(tau))
when the user's replies are deterministic), which is not the Q step below
(tests/test_refuel.py shows the difference).

Why the future and not the immediate reward: least squares fits the conditional mean of its target
given what the prediction sees, (s_h, y_h) and (s_h, y'_h), and E[R(y_h) | s_h, y_h] under pi_t's
completion is Q^{pi_t}(s_h, y_h). So the minimiser over a rich enough class is the soft
policy-improvement (natural policy gradient) step at every turn h,

    pi_{t+1}(y_h|s_h) proportional to pi_t(y_h|s_h) * exp(eta * Q^{pi_t}(s_h, y_h)),

with no critic: two rollouts from the shared prefix estimate the Q difference, and the V(s_h)
baseline cancels in the pair. Regressing onto the immediate reward would fit exp(eta * r_h) and
ignore what a response does to the rest of the dialogue. And because s_h comes from pi_t's own
rollouts, the fit is on the policy's own states (no covariate shift, the paper's point against
last-turn training on fixed dialogues).

Pairs follow `rebel_loss`'s layout: a row per shared prefix, its n >= 2 continuations in columns
(the rollout's consecutive rows, `.view(-1, n)`), all pairs i < j; n = 2 is the paper's. The
official code has no NLL term (checked: its three refuel.py scripts, every commit); `nll_coef` adds
an optional one, nll_coef * mean(nll), off by default.
"""
from __future__ import annotations

import torch

from .rebel import rebel_loss


def refuel_loss(logps: torch.Tensor, old_logps: torch.Tensor, future_rewards: torch.Tensor,
                eta: float, nll_coef: float = 0.0, nll: torch.Tensor | None = None) -> torch.Tensor:
    """The REFUEL regression (module docstring), averaged over prefixes and pairs, plus
    nll_coef * mean(nll).

    `logps` (num_prefixes, n): log pi_theta of each continuation's turn-h policy tokens (with
    grad); `old_logps` (num_prefixes, n): the same under pi_t (held fixed); `future_rewards`
    (num_prefixes, n): the reward from turn h to the end of each continuation (`reward_to_go`);
    `eta` > 0 the step size; `nll` (any shape): negative log-likelihoods the caller chose to add,
    needed when `nll_coef` > 0.
    """
    if nll_coef < 0:
        raise ValueError(f"nll_coef must be >= 0, got {nll_coef}")
    loss = rebel_loss(logps, old_logps, future_rewards, eta)
    if nll_coef == 0:
        return loss
    if nll is None:
        raise ValueError("nll_coef > 0 needs nll (the negative log-likelihoods to add)")
    return loss + nll_coef * nll.to(loss.dtype).mean()


def reward_to_go(turn_rewards: torch.Tensor, start_turn: torch.Tensor) -> torch.Tensor:
    """The future reward sum_{k >= h} r_k of each row: `turn_rewards` (N, H) the rewards of each
    dialogue's turns (0 past its end), `start_turn` (N,) the 0-based turn h its pair branched at."""
    if turn_rewards.dim() != 2 or start_turn.shape != turn_rewards.shape[:1]:
        raise ValueError(f"turn_rewards must be (N, H) and start_turn (N,), got "
                         f"{tuple(turn_rewards.shape)} and {tuple(start_turn.shape)}")
    turns = torch.arange(turn_rewards.shape[1], device=turn_rewards.device)
    return (turn_rewards * (turns[None, :] >= start_turn[:, None])).sum(-1)
