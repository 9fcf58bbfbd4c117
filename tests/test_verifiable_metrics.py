"""pass@k, mean@k and the identical-score share (evaluation/verifiable.py), by hand."""
import math

import pytest
import torch

from rebel_rl.evaluation.verifiable import (
    identical_score_fraction,
    is_verifier_score,
    pass_at_k,
    report_ks,
    verifier_metrics,
)


def test_pass_at_k_matches_the_combinatorial_definition():
    assert pass_at_k(1, 4, 1) == pytest.approx(0.25)
    # 2 of 4 correct, 2 drawn: the only failing draw is the 1 pair of wrong ones out of C(4,2) = 6.
    assert pass_at_k(2, 4, 2) == pytest.approx(1 - 1 / 6)
    assert pass_at_k(0, 4, 4) == 0.0 and pass_at_k(1, 4, 4) == 1.0
    assert pass_at_k(3, 5, 3) == 1.0  # fewer wrong samples than draws
    with pytest.raises(ValueError):
        pass_at_k(1, 4, 5)


def test_verifier_metrics_average_over_prompts_and_skip_unscored_ones():
    verdicts = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [1, math.nan, 0, 0]])
    metrics = verifier_metrics(verdicts)
    assert set(metrics) == {"pass@1", "pass@2", "pass@4", "mean@4"}
    assert metrics["pass@1"] == pytest.approx((0.25 + 0.5 + 0) / 3)
    assert metrics["pass@2"] == pytest.approx((0.5 + 5 / 6 + 0) / 3)
    assert metrics["pass@4"] == pytest.approx(2 / 3)
    assert metrics["mean@4"] == pytest.approx(3 / 12)
    assert report_ks(6) == [1, 2, 4, 6] and report_ks(1) == [1]


def test_only_zero_one_scores_count_as_a_verifier():
    assert is_verifier_score(torch.tensor([0.0, 1.0, math.nan]))
    assert not is_verifier_score(torch.tensor([0.0, 0.5]))
    assert not is_verifier_score(torch.tensor([math.nan]))


def test_identical_score_fraction_groups_consecutive_rows_per_prompt():
    scores = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    assert identical_score_fraction(scores, 2) == pytest.approx(2 / 3)  # (1,1) (0,1) (0,0)
    assert identical_score_fraction(scores, 3) == 0.0  # (1,1,0) (1,0,0)
    assert identical_score_fraction(scores, 1) == 0.0
