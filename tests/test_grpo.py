"""GRPO (algorithms/grpo.py), the worked example of docs/architecture.md: exact values on hand-made
tensors, and the registry entry that makes it a first-class algorithm of the loop."""
import pytest
import torch

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.algorithms.grpo import GROUP_STD_EPS, grpo_advantages, grpo_loss
from rebel_rl.config import algorithm_spec
from rebel_rl.policies.causal_lm.text import TextRollout
from rebel_rl.training.online.methods import Batch
from rebel_rl.training.online.methods.grpo import Grpo, GrpoOptions


def test_advantages_are_standardised_within_each_prompt_group():
    rewards = torch.tensor([[1.0, 3.0], [5.0, 5.0], [0.0, 3.0]])
    advantages = grpo_advantages(rewards)
    std = torch.tensor([2.0, 0.0, 3.0]).div(2 ** 0.5)[:, None]  # sample std of each pair
    torch.testing.assert_close(advantages, (rewards - rewards.mean(-1, keepdim=True)) / (std + GROUP_STD_EPS))
    assert advantages[1].abs().max() == 0  # equal rewards carry no signal
    assert advantages[0, 1] > 0 > advantages[0, 0]  # the better sample is pushed up
    torch.testing.assert_close(grpo_advantages(rewards, scale=False), torch.tensor([[-1.0, 1.0], [0, 0], [-1.5, 1.5]]))


def test_loss_at_ratio_one_averages_each_completion_over_its_own_tokens():
    logps = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    advantages = torch.tensor([2.0, -1.0])
    loss, ratio, clipped = grpo_loss(logps, torch.zeros(2, 3), advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx(-(2.0 + -1.0) / 2)  # mean_i (1/|y_i|) sum_t -A_i * 1
    assert clipped.item() == 0 and torch.equal(ratio.detach(), torch.ones(2, 3))
    loss.backward()
    # d loss / d logp_{i,t} = -A_i / (2 |y_i|) on live tokens, 0 on masked ones (a wrong mask or length fails)
    torch.testing.assert_close(logps.grad, torch.tensor([[-1 / 3, -1 / 3, -1 / 3], [0.5, 0.0, 0.0]]))


def test_clipping_stops_the_gradient_beyond_one_plus_epsilon():
    old = torch.zeros(1, 2)
    logps = torch.log(torch.tensor([[1.5, 1.1]])).requires_grad_(True)  # ratios 1.5 (clipped) and 1.1
    loss, _, clipped = grpo_loss(logps, old, torch.tensor([1.0]), torch.ones(1, 2), clip_range=0.2)
    loss.backward()
    assert clipped.item() == pytest.approx(0.5)
    assert logps.grad[0, 0] == 0 and logps.grad[0, 1] < 0


# Two completions of very different lengths (4 tokens and 1) at ratio 1, so l_{i,t} = -A_i: each
# reduction weighs the short one differently, and all four values differ.
VARIED_MASK = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]])
VARIED_ADVANTAGES = torch.tensor([1.0, -2.0])


def _varied_loss(**kwargs):
    logps = torch.zeros(2, 4, requires_grad=True)
    loss, _, _ = grpo_loss(logps, torch.zeros(2, 4), VARIED_ADVANTAGES, VARIED_MASK, 0.2, **kwargs)
    loss.backward()
    return loss.item(), logps.grad


@pytest.mark.parametrize(("kwargs", "value", "row_grads"), [
    # grpo: mean_i (1/|y_i|) sum_t -A_i = (-1 + 2) / 2; d/dlogp = -A_i / (N |y_i|)
    ({}, 0.5, (-1 / 8, 1.0)),
    ({"loss_type": "grpo"}, 0.5, (-1 / 8, 1.0)),
    # bnpo: sum_{i,t} -A_i / sum_i |y_i| = (-4 + 2) / 5; d/dlogp = -A_i / 5
    ({"loss_type": "bnpo"}, -0.4, (-0.2, 0.4)),
    # dapo without the step's count is bnpo; with 10 tokens in the step: -2 / 10
    ({"loss_type": "dapo"}, -0.4, (-0.2, 0.4)),
    ({"loss_type": "dapo", "num_tokens": 10}, -0.2, (-0.1, 0.2)),
    # dr_grpo: sum -A_i / (N * L_max) = -2 / (2 * 8); L_max defaults to the 4 token columns
    ({"loss_type": "dr_grpo", "max_completion_length": 8}, -0.125, (-1 / 16, 1 / 8)),
    ({"loss_type": "dr_grpo"}, -0.25, (-1 / 8, 1 / 4)),
])
def test_loss_types_normalise_tokens_as_trl_names_them(kwargs, value, row_grads):
    loss, grad = _varied_loss(**kwargs)
    assert loss == pytest.approx(value)
    expected = torch.tensor([[row_grads[0]] * 4, [row_grads[1], 0.0, 0.0, 0.0]])
    torch.testing.assert_close(grad, expected)


def test_the_default_reduction_is_still_per_completion_then_mean():
    """Pins today's behaviour: the default is "grpo", not a token-level mean."""
    assert _varied_loss()[0] == pytest.approx(_varied_loss(loss_type="grpo")[0])
    assert _varied_loss()[0] != pytest.approx(_varied_loss(loss_type="bnpo")[0])


def test_advantage_scaling_group_batch_none():
    rewards = torch.tensor([[1.0, 3.0], [5.0, 5.0], [0.0, 3.0]])
    centred = torch.tensor([[-1.0, 1.0], [0.0, 0.0], [-1.5, 1.5]])
    # the sample std of all six rewards [1, 3, 5, 5, 0, 3] (mean 17/6): sqrt(125/6 / 5) = sqrt(25/6)
    batch_std = (25 / 6) ** 0.5
    torch.testing.assert_close(grpo_advantages(rewards, "batch"),
                               centred / (batch_std + GROUP_STD_EPS))
    torch.testing.assert_close(grpo_advantages(rewards, "none"), centred)
    torch.testing.assert_close(grpo_advantages(rewards, "group"), grpo_advantages(rewards, True))
    torch.testing.assert_close(grpo_advantages(rewards, False), centred)


def test_bad_loss_type_scale_and_length_are_named():
    with pytest.raises(ValueError, match="loss_type must be one of"):
        _varied_loss(loss_type="token")
    with pytest.raises(ValueError, match="scale must be one of"):
        grpo_advantages(torch.zeros(1, 2), "prompt")
    with pytest.raises(ValueError, match="max_completion_length 3 is below the longest completion"):
        _varied_loss(loss_type="dr_grpo", max_completion_length=3)


def test_the_registry_entry_declares_what_grpo_needs():
    spec = algorithm_spec("grpo")
    assert spec.min_generations == 2 and "diffusion" in spec.policy_kinds
    config = RebelConfig(algorithm="grpo", clip_range=0.1, scale_rewards=False).validate()
    assert (config.grpo.clip_range, config.grpo.scale_rewards) == (0.1, "none")
    assert RebelConfig().grpo.loss_type == "grpo" and RebelConfig().grpo.scale_rewards == "group"
    with pytest.raises(ConfigError, match="num_generations must be >= 2 for grpo"):
        RebelConfig(algorithm="grpo", num_generations=1).validate()
    with pytest.raises(ConfigError, match="grpo normalises rewards per prompt itself"):
        RebelConfig(algorithm="grpo", reward_normalization="prompt").validate()
    with pytest.raises(ConfigError, match="pair_source 'offline' needs algorithm rebel, got 'grpo'"):
        RebelConfig(algorithm="grpo", pair_source="offline").validate()


# ------------------------------------------------------------------ the options reach the objective
def _objective_batch(episode: bool = False):
    """Two prompts of two rows at ratio 1: prompt 0's rows have 4 and 1 scored tokens and rewards
    0 and 3 (advantages -1.5, 1.5 unscaled), prompt 1's 4 and 4 with equal rewards; 13 tokens."""
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]])
    ids = torch.zeros(4, 1, dtype=torch.long)
    rollout = TextRollout(ids, torch.ones_like(ids), torch.zeros(4, 4, dtype=torch.long), mask,
                          torch.ones(4, dtype=torch.bool), [""] * 4,
                          completion_attention_mask=torch.ones(4, 4) if episode else None)
    reward = torch.tensor([0.0, 3.0, 1.0, 1.0])
    batch = Batch(rollout, torch.zeros(4), reward, torch.zeros(4), reward,
                  current_token_logps=torch.zeros(4, 4, requires_grad=True))
    batch.extra["old_token_logps"] = torch.zeros(4, 4)
    return batch


def _objective_loss(episode: bool = False, **options) -> float:
    objective = Grpo(GrpoOptions(scale_rewards="none", **options), 2, limits=(8, 64))
    batch = _objective_batch(episode)
    objective.prepare(batch, policy=None)
    loss, _ = objective.loss(batch.select(torch.tensor([0, 1])), policy=None)  # prompt 0 alone
    return loss.item()


@pytest.mark.parametrize(("loss_type", "episode", "value"), [
    ("grpo", False, 0.0),  # (1.5 * 4 / 4 - 1.5) / 2
    ("bnpo", False, 4.5 / 5),  # over the minibatch's 5 tokens
    ("dapo", False, 4.5 / 6.5),  # over the iteration's mean 6.5 tokens per minibatch of 1 prompt
    ("dr_grpo", False, 4.5 / (2 * 8)),  # over N * max_new_tokens
    ("dr_grpo", True, 4.5 / (2 * 64)),  # an episode: over N * max_total_tokens
])
def test_each_loss_type_reaches_the_objective(loss_type, episode, value):
    assert _objective_loss(episode, loss_type=loss_type) == pytest.approx(value)


@pytest.mark.parametrize("scale", [True, "true", "group", "batch", "none", False, "False"])
def test_scale_rewards_reaches_the_advantages(scale):
    objective = Grpo(GrpoOptions(scale_rewards=scale), 2)
    batch = _objective_batch()
    objective.prepare(batch, policy=None)
    mode = {"true": "group", "false": "none"}.get(str(scale).lower(), str(scale))
    expected = grpo_advantages(batch.reward.view(2, 2), mode).flatten()
    torch.testing.assert_close(batch.extra["advantages"], expected)
    assert expected.abs().max() > 0 and (mode == "none") == (expected[1] == 1.5)


@pytest.mark.parametrize(("values", "message"), [
    ({"loss_type": "token"}, "loss_type must be one of grpo, bnpo, dapo, dr_grpo; got 'token'"),
    ({"scale_rewards": "prompt"}, "scale_rewards must be one of group, batch, none"),
])
def test_bad_options_are_one_config_error_line(values, message):
    with pytest.raises(ConfigError, match=message) as error:
        RebelConfig(algorithm="grpo", **values).validate()
    assert "\n" not in str(error.value)


def test_the_options_take_the_values_the_pure_functions_do():
    from rebel_rl.algorithms import grpo as pure
    from rebel_rl.training.online.methods import grpo as method

    assert method.LOSS_TYPES == pure.LOSS_TYPES and method.SCALE_REWARDS == pure.SCALE_REWARDS
