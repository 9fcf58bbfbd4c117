"""DPO: Direct Preference Optimization (Rafailov et al., NeurIPS 2023, arXiv 2305.18290).

For a prompt x with a preferred completion y_w and a dispreferred one y_l, DPO fits the policy by
logistic regression on the difference of implicit rewards r(x, y) = beta * (log pi_theta(y|x) - log
pi_ref(y|x)):

    loss(theta) = mean_x [ -log sigmoid( beta * ( (log pi_theta(y_w|x) - log pi_ref(y_w|x))
                                                - (log pi_theta(y_l|x) - log pi_ref(y_l|x)) ) ) ]

Its minimiser under the Bradley-Terry model is the KL-regularised optimum pi_ref * exp(r / beta).
Offline DPO uses a fixed preference dataset and a frozen pi_ref; iterative (online) DPO uses the
same loss on pairs sampled from pi_t, with pi_t or the initial model as pi_ref.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def dpo_loss(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """The DPO loss, averaged over pairs: mean of -log sigmoid(beta * ((lc - rc) - (lr - rr))).

    `chosen_logps`, `rejected_logps` (N,): sequence log-probs of the preferred and dispreferred
    completions under the policy being trained (with grad); `ref_chosen_logps`, `ref_rejected_logps`
    (N,): the same under the reference policy (detached: no gradient flows into the reference).
    `beta` > 0 is the strength of the implicit KL regularisation.
    """
    shapes = {
        tuple(t.shape) for t in (chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    }
    if len(shapes) != 1:
        raise ValueError(
            f"the four log-prob tensors must have the same shape, got {sorted(shapes)}"
        )
    logits = implicit_margin(
        chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps, beta
    )
    # -log sigmoid(z) == softplus(-z), computed stably for large |z|.
    return -F.logsigmoid(logits).mean()


def implicit_margin(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-pair difference of implicit rewards, beta * ((lc - rc) - (lr - rr)), shape (N,).

    Differentiable in the policy terms only; the reference terms are detached.
    """
    chosen = chosen_logps - ref_chosen_logps.detach()
    rejected = rejected_logps - ref_rejected_logps.detach()
    return beta * (chosen - rejected)


@torch.no_grad()
def preference_metrics(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> dict[str, float]:
    """TRL's DPO metrics for a batch: mean implicit rewards of chosen and rejected, their margin,
    and the accuracy (share of pairs whose chosen completion has the higher implicit reward)."""
    chosen = beta * (chosen_logps - ref_chosen_logps)
    rejected = beta * (rejected_logps - ref_rejected_logps)
    return {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
    }
