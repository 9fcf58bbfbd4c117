"""The DPO loss: exact values on hand-made tensors, its sign, no gradient into the reference, beta."""
import math

import pytest
import torch

from rebel_rl.algorithms.dpo import dpo_loss, implicit_margin, preference_metrics

CHOSEN = torch.tensor([-3.0, -5.0])
REJECTED = torch.tensor([-4.0, -2.0])
REF_CHOSEN = torch.tensor([-3.5, -4.0])
REF_REJECTED = torch.tensor([-3.0, -2.5])


def test_equals_hand_computation():
    beta = 0.5
    # pair 0: (-3 + 3.5) - (-4 + 3) = 0.5 + 1 = 1.5;  pair 1: (-5 + 4) - (-2 + 2.5) = -1 - 0.5 = -1.5
    expected = (-math.log(1 / (1 + math.exp(-0.75))) - math.log(1 / (1 + math.exp(0.75)))) / 2
    loss = dpo_loss(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert implicit_margin(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, beta).tolist() == pytest.approx([0.75, -0.75])


def test_raising_chosen_logp_lowers_loss_and_rejected_raises_it():
    base = dpo_loss(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, 0.1)
    assert dpo_loss(CHOSEN + 1, REJECTED, REF_CHOSEN, REF_REJECTED, 0.1) < base
    assert dpo_loss(CHOSEN, REJECTED + 1, REF_CHOSEN, REF_REJECTED, 0.1) > base
    chosen = CHOSEN.clone().requires_grad_(True)
    rejected = REJECTED.clone().requires_grad_(True)
    dpo_loss(chosen, rejected, REF_CHOSEN, REF_REJECTED, 0.1).backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()


def test_reference_terms_get_no_gradient():
    ref_chosen = REF_CHOSEN.clone().requires_grad_(True)
    ref_rejected = REF_REJECTED.clone().requires_grad_(True)
    chosen = CHOSEN.clone().requires_grad_(True)
    dpo_loss(chosen, REJECTED, ref_chosen, ref_rejected, 0.1).backward()
    assert ref_chosen.grad is None and ref_rejected.grad is None
    assert chosen.grad is not None


def test_beta_scales_the_logits():
    # With zero margin the loss is log 2 whatever beta is; otherwise beta multiplies the margin.
    zeros = torch.zeros(3)
    assert dpo_loss(zeros, zeros, zeros, zeros, 7.0).item() == pytest.approx(math.log(2))
    assert dpo_loss(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, 0.2).item() == pytest.approx(
        dpo_loss(2 * CHOSEN, 2 * REJECTED, 2 * REF_CHOSEN, 2 * REF_REJECTED, 0.1).item()
    )
    small = implicit_margin(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, 0.1)
    large = implicit_margin(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, 1.0)
    assert torch.allclose(large, 10 * small)


def test_metrics_and_shape_check():
    metrics = preference_metrics(CHOSEN, REJECTED, REF_CHOSEN, REF_REJECTED, 1.0)
    assert metrics["rewards/accuracies"] == 0.5
    assert metrics["rewards/margins"] == pytest.approx(0.0)
    assert metrics["rewards/chosen"] == pytest.approx((0.5 - 1.0) / 2)
    with pytest.raises(ValueError, match="same shape"):
        dpo_loss(CHOSEN, REJECTED[:1], REF_CHOSEN, REF_REJECTED, 0.1)
