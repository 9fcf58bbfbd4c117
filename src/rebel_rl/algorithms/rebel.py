"""REBEL: REgression to RElative REward Based RL (Gao et al., NeurIPS 2024, arXiv 2404.16767).

For a prompt x with completions y_1..y_n sampled from pi_t, REBEL fits the new policy by least
squares on every pair i < j:

    loss(theta) = mean_{x, i<j} [ (1/eta) * ( (log pi_theta(y_i|x) - log pi_t(y_i|x))
                                            - (log pi_theta(y_j|x) - log pi_t(y_j|x)) )
                                  - ( r(x, y_i) - r(x, y_j) ) ]^2

Its exact minimiser is pi_theta proportional to pi_t * exp(eta * r): one REBEL iteration is a
mirror-descent (natural policy gradient) step, with no value network and no clipping. For n = 2 this
is exactly the paper's loss.

With a pairwise preference P(y > y'|x) instead of a reward (the paper's extension to general,
possibly intransitive preferences), `rebel_preference_loss` regresses the same prediction onto P(y_i
> y_j|x) - 1/2: its minimiser is pi_t * exp(eta * E_{y'~pi_t} P(y > y'|x)), a self-play
mirror-descent step whose average iterate approaches the preference's (minimax) Nash policy.
"""
from __future__ import annotations

import torch


def rebel_loss(
    logps: torch.Tensor, old_logps: torch.Tensor, rewards: torch.Tensor, eta: float
) -> torch.Tensor:
    """The REBEL regression loss, averaged over prompts and over all pairs i < j of their samples.

    `logps` (num_prompts, n): sequence log-probs under the policy being trained (with grad);
    `old_logps` (num_prompts, n): the same under pi_t, the policy that sampled them (held fixed);
    `rewards` (num_prompts, n): the rewards. `eta` > 0 is the step size.
    """
    if logps.dim() != 2 or logps.shape[1] < 2:
        raise ValueError(
            f"logps must have shape (num_prompts, n) with n >= 2, got {tuple(logps.shape)}"
        )
    if old_logps.shape != logps.shape or rewards.shape != logps.shape:
        raise ValueError(
            f"logps {tuple(logps.shape)}, old_logps {tuple(old_logps.shape)} and rewards "
            f"{tuple(rewards.shape)} must have the same shape"
        )
    log_ratio = logps - old_logps.detach()
    rewards = rewards.detach().to(log_ratio.dtype)
    i, j = torch.triu_indices(logps.shape[1], logps.shape[1], offset=1, device=logps.device)
    predicted = (log_ratio[:, i] - log_ratio[:, j]) / eta
    target = rewards[:, i] - rewards[:, j]
    return ((predicted - target) ** 2).mean()


def rebel_preference_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    preferences: torch.Tensor,
    eta: float,
    kl: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """REBEL for general preferences, over every pair i < j of a prompt's n completions:

        loss = mean_{x, i<j} [ (1/eta) * ( (log pi_theta(y_i|x) - log pi_t(y_i|x))
                                         - (log pi_theta(y_j|x) - log pi_t(y_j|x)) )
                               - ( P(y_i > y_j|x) - 1/2 - kl_coef * (KL_i - KL_j) ) ]^2

    `preferences` (num_prompts, n, n): [:, i, j] = P(y_i > y_j|x) in [0, 1] (only i < j is read);
    `kl` (num_prompts, n): log pi_t(y|x) - log pi_ref(y|x) per completion, subtracted as the KL
    penalty kl_coef * (KL_i - KL_j) when kl_coef > 0; `logps`, `old_logps`, `eta` as in
    `rebel_loss`. When y_i and y_j are both drawn from pi_t, the minimiser is pi_t * exp(eta *
    (E_{y'~pi_t} P(y > y'|x)
    - kl_coef * KL)) (the 1/2 is then a constant the prediction, a difference, cannot fit); for a
      dataset
    y_j (hybrid pairs) the 1/2 matters: it makes the target of a completion against itself 0.
    `reduction="none"` returns the per-pair terms (num_prompts, n*(n-1)/2).
    """
    if logps.dim() != 2 or logps.shape[1] < 2:
        raise ValueError(
            f"logps must have shape (num_prompts, n) with n >= 2, got {tuple(logps.shape)}"
        )
    num_prompts, n = logps.shape
    if old_logps.shape != logps.shape or preferences.shape != (num_prompts, n, n):
        raise ValueError(
            f"logps {tuple(logps.shape)} and old_logps {tuple(old_logps.shape)} must match, and "
            f"preferences {tuple(preferences.shape)} must be (num_prompts, n, n)"
        )
    log_ratio = logps - old_logps.detach()
    i, j = torch.triu_indices(n, n, offset=1, device=logps.device)
    predicted = (log_ratio[:, i] - log_ratio[:, j]) / eta
    target = preferences.detach().to(log_ratio.dtype)[:, i, j] - 0.5
    if kl_coef:
        if kl is None or kl.shape != logps.shape:
            raise ValueError("kl_coef > 0 needs kl with the shape of logps")
        kl = kl.detach().to(log_ratio.dtype)
        target = target - kl_coef * (kl[:, i] - kl[:, j])
    terms = (predicted - target) ** 2
    return terms if reduction == "none" else terms.mean()
