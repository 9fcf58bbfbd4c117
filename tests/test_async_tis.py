"""Truncated importance sampling wired into PPO, GRPO and RLOO (`tis_cap`, algorithms/importance.py):
each objective's loss weights each sample's term by min(pi_t / pi_sampler, cap), an async run logs
the weights and its loss moves with them, and a cap without async rollouts is refused."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

import rebel_rl.algorithms.importance as importance
import rebel_rl.models.value as value_module
from rebel_rl import ConfigError
from rebel_rl.training.online.loop import RebelTrainer
from rebel_rl.training.online.methods import Batch
from rebel_rl.training.online.methods.grpo import Grpo, GrpoOptions
from rebel_rl.training.online.methods.ppo import Ppo, PpoOptions
from rebel_rl.training.online.methods.rloo import Rloo, RlooOptions
from test_async_rollouts import async_config, metrics_lines
from test_training import files  # noqa: F401 (fixture)

CAP = 2.0
# Two prompts, two samples each; the second sample's ratio pi_t / pi_sampler = e^1 is capped at 2.
OLD_LOGPS = torch.tensor([-2.0, -1.0, -3.0, -1.5])
SAMPLER_LOGPS = torch.tensor([-2.5, -2.0, -2.8, -1.5])
WEIGHTS = torch.tensor([torch.e ** 0.5, CAP, torch.e ** -0.2, 1.0])


class FakeRollout:
    """What the objectives read of a rollout: the completion mask and the row count."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.completion_mask = mask

    def __len__(self) -> int:
        return self.completion_mask.shape[0]


def tiny_batch(sampler: bool = True) -> Batch:
    """Four rows of three tokens (the last row's third is padding), log pi_theta per token off
    log pi_t by up to 0.4 so that some ratios leave [0.8, 1.2] and are clipped."""
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1], [1, 0, 0]])
    old = torch.tensor([[-0.5, -1.0, -0.5], [-0.6, -0.4, 0.0], [-1.0, -1.0, -1.0],
                        [-1.5, 0.0, 0.0]])
    current = old + torch.tensor([[0.3, -0.1, 0.0], [-0.4, 0.05, 0.0], [0.1, 0.35, -0.3],
                                  [0.2, 0.0, 0.0]])
    reward = torch.tensor([1.0, 0.0, 0.5, 2.0])
    batch = Batch(FakeRollout(mask), OLD_LOGPS.clone(), reward.clone(), torch.zeros(4), reward,
                  current_token_logps=current.requires_grad_(True))
    batch.extra["old_token_logps"] = old
    batch.extra["token_kl"] = torch.zeros_like(old)
    if sampler:
        batch.extra["sampler_logps"] = SAMPLER_LOGPS.clone()
    return batch


def surrogate(batch: Batch, advantages: torch.Tensor, eps: float = 0.2) -> torch.Tensor:
    """The clipped surrogate per token, written out: max(-A rho, -A clip(rho, 1 - eps, 1 + eps))."""
    ratio = (batch.current_token_logps - batch.extra["old_token_logps"]).exp().detach()
    return torch.maximum(-advantages * ratio, -advantages * ratio.clamp(1 - eps, 1 + eps))


def test_prepare_logs_the_weights_under_the_prefix():
    batch = tiny_batch()
    stats = Grpo(GrpoOptions(tis_cap=CAP), 2).prepare(batch, None)
    assert torch.allclose(batch.extra["tis_weights"], WEIGHTS)
    assert stats["grpo/tis/clipped_fraction"] == 0.25
    assert stats["grpo/tis/weight_mean"] == pytest.approx(float(WEIGHTS.mean()))


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo"])
def test_grpo_loss_is_the_weighted_loss(loss_type):
    batch = tiny_batch()
    objective = Grpo(GrpoOptions(tis_cap=CAP, loss_type=loss_type), 2)
    objective.prepare(batch, None)
    loss, _ = objective.loss(batch, None)
    mask = batch.rollout.completion_mask.float()
    advantage = batch.extra["advantages"]  # one per completion: (r - group mean) / group std
    std = torch.tensor([0.5 ** 0.5] * 2 + [1.5 / 2 ** 0.5] * 2)  # the groups' sample stds
    expected_advantage = torch.tensor([0.5, -0.5, -0.75, 0.75]) / (std + 1e-4)
    assert torch.allclose(advantage, expected_advantage)
    terms = surrogate(batch, advantage[:, None]) * mask * WEIGHTS[:, None]
    if loss_type == "grpo":
        expected = (terms.sum(-1) / mask.sum(-1)).mean()
    else:
        expected = terms.sum() / mask.sum()
    assert loss.item() == pytest.approx(float(expected), rel=1e-6)
    plain, unweighted = tiny_batch(sampler=False), Grpo(GrpoOptions(loss_type=loss_type), 2)
    unweighted.prepare(plain, None)
    assert abs(loss.item() - unweighted.loss(plain, None)[0].item()) > 1e-3  # the weights matter


def test_rloo_loss_is_the_weighted_loss():
    batch = tiny_batch()
    objective = Rloo(RlooOptions(tis_cap=CAP), 2)
    objective.prepare(batch, None)
    loss, _ = objective.loss(batch, None)
    advantage = torch.tensor([1.0, -1.0, -1.5, 1.5])  # r_i - the other sample's reward
    logps = batch.current_token_logps.detach().sum(-1)
    expected = -(WEIGHTS * advantage * logps).mean()
    assert loss.item() == pytest.approx(float(expected), rel=1e-6)
    assert abs(loss.item() + (advantage * logps).mean().item()) > 1e-2  # the weights matter
    loss.backward()  # the gradient is the weighted one too: -w_i A_i / N per token of row i
    grad = batch.current_token_logps.grad
    assert torch.allclose(grad[:, 0], -(WEIGHTS * advantage) / 4)


def test_ppo_policy_loss_is_the_weighted_loss(monkeypatch):
    values = torch.tensor([[0.1, 0.2, 0.3], [0.0, -0.1, 0.0], [0.3, 0.1, 0.2], [0.5, 0.0, 0.0]])
    monkeypatch.setattr(value_module, "token_values", lambda model, rollout: values)
    policy = SimpleNamespace(autocast=contextlib.nullcontext)
    batch = tiny_batch()
    objective = Ppo(PpoOptions(tis_cap=CAP), 2, value_model=None, kl_coef=0.0)
    stats = objective.prepare(batch, policy)
    assert stats["ppo/tis/clipped_fraction"] == 0.25
    _, loss_stats = objective.loss(batch, policy)
    mask = batch.rollout.completion_mask.float()
    terms = surrogate(batch, batch.extra["advantages"]) * WEIGHTS[:, None] * mask
    expected = terms.sum() / mask.sum()
    assert loss_stats["ppo/policy_loss"] == pytest.approx(float(expected), abs=1e-7)
    unweighted = surrogate(batch, batch.extra["advantages"]) * mask
    assert abs(float(expected) - float(unweighted.sum() / mask.sum())) > 1e-2


@pytest.mark.parametrize("make", [lambda: Grpo(GrpoOptions(tis_cap=0.0), 2),
                                  lambda: Rloo(RlooOptions(tis_cap=CAP), 2)])
def test_no_cap_or_no_sampler_logps_leaves_the_loss_unweighted(make):
    """tis_cap 0 with sampler log-probs, or a cap on a batch drawn by pi_t (none): weight 1."""
    objective = make()
    sampler = objective.options.tis_cap == 0
    batch, plain = tiny_batch(sampler=sampler), tiny_batch(sampler=False)
    assert objective.prepare(batch, None) == {} and "tis_weights" not in batch.extra
    objective.prepare(plain, None)
    reference = Rloo(RlooOptions(), 2) if isinstance(objective, Rloo) else Grpo(GrpoOptions(), 2)
    reference.prepare(plain, None)
    assert torch.equal(objective.loss(batch, None)[0], reference.loss(plain, None)[0])


def run_rows(files, run_dir, **overrides):  # noqa: F811
    """The metrics lines of a two-iteration async run."""
    RebelTrainer(async_config(files, run_dir, **overrides)).train()
    return metrics_lines(run_dir)


@pytest.mark.parametrize("algorithm", ["grpo", "rloo", "ppo"])
def test_async_run_weights_its_loss(files, tmp_path, monkeypatch, algorithm):  # noqa: F811
    off = run_rows(files, tmp_path / "off", algorithm=algorithm, tis_cap=0.0)
    on = run_rows(files, tmp_path / "on", algorithm=algorithm, tis_cap=CAP)
    keys = [f"{algorithm}/tis/weight_mean", f"{algorithm}/tis/clipped_fraction"]
    assert not any(key in on[0] for key in keys)  # batch 0 is drawn by pi_0 itself
    assert all(key in on[1] for key in keys) and not any(key in off[1] for key in keys)
    assert on[1][keys[0]] != pytest.approx(1.0, abs=1e-4) and 0 <= on[1][keys[1]] <= 1
    assert on[0]["loss"] == off[0]["loss"]
    assert abs(on[1]["loss"] - off[1]["loss"]) > 1e-6  # the weights change the loss

    def unit_weights(trainer_logps, sampler_logps, cap):
        return torch.ones_like(trainer_logps), {"tis/weight_mean": 1.0}

    monkeypatch.setattr(importance, "truncated_importance_weights", unit_weights)
    ones = run_rows(files, tmp_path / "ones", algorithm=algorithm, tis_cap=CAP)
    assert ones[1]["loss"] == off[1]["loss"]  # weights of 1: the tis_cap 0 run exactly


def test_cap_without_async_rollouts_is_refused(files, tmp_path):  # noqa: F811
    run_dir = tmp_path / "run"
    with pytest.raises(ConfigError, match=r"grpo\.tis_cap=2\.0 .*set tis_cap 0 or "
                                          r"async_rollouts 1") as error:
        RebelTrainer(async_config(files, run_dir, algorithm="grpo", async_rollouts=0,
                                  tis_cap=CAP))
    assert "\n" not in str(error.value) and not run_dir.exists()  # before anything is written
    with pytest.raises(ConfigError, match="tis_cap must be >= 0, got -1"):
        async_config(files, run_dir, algorithm="rloo", tis_cap=-1.0).validate()

