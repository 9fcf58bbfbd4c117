"""Micro-batches by token budget (`max_tokens_per_microbatch`): which rows go together, and the
accumulated gradient against the one-pass gradient for several objectives on rows of very
different lengths."""
from types import SimpleNamespace

import pytest
import torch

import rebel_rl
from rebel_rl.cli import main
from rebel_rl.training.online import loop
from rebel_rl.training.online.loop import RebelTrainer
from rebel_rl.training.online.microbatch import microbatch_rows, narrowed
from rebel_rl.training.run.outputs import read_metrics
from test_training import files, make_config  # noqa: F401  (a pytest fixture and its helper)

# completion lengths per row (2 rows per prompt, 4 prompts): a row of 1 token beside one of 12
LENGTHS = [1, 12, 3, 3, 12, 11, 2, 5]


def fake_rollout(prompt_tokens: list[int], completion_tokens: list[int]) -> SimpleNamespace:
    width_p, width_c = max(prompt_tokens), max(completion_tokens) + 2
    prompt = torch.tensor([[0] * (width_p - p) + [1] * p for p in prompt_tokens])
    completion = torch.tensor([[1] * c + [0] * (width_c - c) for c in completion_tokens])
    return SimpleNamespace(prompt_mask=prompt, completion_mask=completion)


def test_rows_packed_by_whole_groups_then_rows_then_split_to_a_count():
    # tokens per row: 3+1, 3+12 | 2+3, 2+3 | 4+12, 4+11 | 1+2, 1+5 = 4, 15 | 5, 5 | 16, 15 | 3, 6
    rollout = fake_rollout([3, 3, 2, 2, 4, 4, 1, 1], LENGTHS)
    def parts(budget: int, **kw) -> list[list[int]]:
        return [p.tolist() for p in microbatch_rows(rollout, 2, budget, **kw)]

    # 19 + 10 fit 29; group 3 (31) is over budget: its rows alone; 16 alone; 15 + 9 = 24
    assert parts(30) == [[0, 1, 2, 3], [4], [5, 6, 7]]
    assert parts(1000) == [[0, 1, 2, 3, 4, 5, 6, 7]]
    # below every group: rows one by one, packed while they fit (4 + 15 > 16)
    assert parts(16) == [[0], [1], [2, 3], [4], [5], [6, 7]]
    assert parts(1) == [[i] for i in range(8)]  # every row over budget runs alone
    # another process needs 3 forwards: the largest micro-batch is halved
    assert parts(1000, at_least=3) == [[0, 1, 2, 3], [4, 5], [6, 7]]


def test_narrowed_drops_only_shared_padding(files, tmp_path):  # noqa: F811
    config = make_config(files, tmp_path / "run", max_new_tokens=12, rewards=[files["count_e"]])
    trainer = RebelTrainer(config)
    policy = trainer.policy
    rollout = uneven(policy.sample(["the movie was", "i feel"], 2))
    part = rollout.select(torch.tensor([0, 2]))
    short = narrowed(part)
    assert short.completion_ids.shape[1] == max(LENGTHS[0], LENGTHS[2])
    assert short.prompt_ids.shape[1] == int(part.prompt_mask.sum(-1).max())
    with torch.no_grad():
        full, trimmed = policy.token_log_probs(part), policy.token_log_probs(short)
    torch.testing.assert_close(full[:, : trimmed.shape[1]], trimmed, rtol=1e-5, atol=1e-6)
    assert full[:, trimmed.shape[1]:].abs().sum() == 0


def uneven(rollout):
    """The rollout with completion i cut to LENGTHS[i] tokens (and no EOS)."""
    positions = torch.arange(rollout.completion_mask.shape[1])
    lengths = torch.tensor(LENGTHS[: len(rollout)])
    rollout.completion_mask = (positions < lengths[:, None]).to(rollout.completion_mask.dtype)
    rollout.has_eos = torch.zeros_like(rollout.has_eos)
    return rollout


def captured_batch(trainer, monkeypatch):
    """The batch one `step` hands to `update` (rows cut to LENGTHS), the weights left unchanged."""
    collect = loop.collect_rollout
    monkeypatch.setattr(loop, "collect_rollout", lambda *args: uneven(collect(*args)))
    seen = []
    monkeypatch.setattr(trainer, "update", lambda batch: seen.append(batch) or ([0.0], [0.0], {}))
    trainer.step()
    return seen[0]


def gradients(trainer, backward) -> list[torch.Tensor]:
    trainer.optimizer.zero_grad(set_to_none=True)
    backward()
    params = trainer.trainable_params
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]


@pytest.mark.parametrize("algorithm", ["rebel", "grpo", "rloo", "ppo", "iterative_dpo", "apo"])
@pytest.mark.parametrize("budget", [40, 12])
def test_accumulated_gradient_equals_the_one_pass_gradient(files, tmp_path,  # noqa: F811
                                                           monkeypatch, algorithm, budget):
    config = make_config(files, tmp_path / "run", algorithm=algorithm, max_new_tokens=12,
                         minibatch_prompts=4, max_tokens_per_microbatch=budget, kl_coef=0.1,
                         rewards=[files["count_e"]])
    trainer = RebelTrainer(config)
    for module in [trainer.policy.model, *trainer.objective.modules()]:
        module.double()
    batch = captured_batch(trainer, monkeypatch)
    assert batch.current_token_logps is None  # no whole-batch graph reused under micro-batches
    policy, objective = trainer.policy, trainer.objective
    with torch.no_grad():  # nudge log pi_theta away from log pi_t so that ratios and clips matter
        for p in trainer.trainable_params:
            p.add_(0.05 * torch.randn_like(p))

    one_pass = {}

    def whole():
        loss, stats = objective.loss(batch.select(torch.arange(len(batch.rollout))), policy)
        (loss / 2).backward()
        one_pass.update(loss=loss.item(), **stats)

    expected = gradients(trainer, whole)
    forwards = []
    original = policy.token_log_probs
    monkeypatch.setattr(policy, "token_log_probs", lambda rollout, **kw: forwards.append(
        (torch.is_grad_enabled(), rollout)) or original(rollout, **kw))
    micro = {}

    def accumulated():
        loss, stats = trainer._microbatched(batch, 2, True)
        micro.update(loss=loss.item(), **stats)

    got = gradients(trainer, accumulated)
    parts = microbatch_rows(batch.rollout, 2, budget)
    assert len(parts) > 1
    with_grad = [rollout for grad, rollout in forwards if grad]
    assert len(with_grad) == len(parts) and len(forwards) == 2 * len(parts)
    for rollout, part in zip(with_grad, parts):  # each forward holds only its rows, trimmed
        assert len(rollout) == len(part)
        assert rollout.completion_mask.shape[1] == rollout.completion_mask.sum(-1).max()
    assert sum(g.abs().sum() for g in expected) > 0
    for e, g in zip(expected, got):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-7)
    assert micro == pytest.approx(one_pass, rel=1e-5, abs=1e-7)


def test_run_with_micro_batches_from_the_cli(files, tmp_path):  # noqa: F811
    run = tmp_path / "run"
    code = main(["train", "--model_name_or_path", files["model"], "--dataset", files["train"],
                 "--rewards", files["count_e"], "--num_iterations", "2",
                 "--prompts_per_iteration", "4", "--minibatch_prompts", "2",
                 "--num_generations", "2", "--max_new_tokens", "8", "--eval_prompts", "0",
                 "--lora_r", "4", "--mixed_precision", "no", "--progress", "false",
                 "--tensorboard", "false", "--save_every", "0", "--max_tokens_per_microbatch", "20",
                 "--output_dir", str(run)])
    assert code in (0, None)
    metrics = read_metrics(run)
    assert [m["iteration"] for m in metrics] == [1, 2]
    assert all(m["grad_norm"] > 0 for m in metrics)


def test_negative_budget_is_a_config_error(files, tmp_path):  # noqa: F811
    with pytest.raises(rebel_rl.ConfigError, match="max_tokens_per_microbatch"):
        make_config(files, tmp_path / "run", max_tokens_per_microbatch=-1,
                    rewards=[files["count_e"]]).validate()


def test_log_prob_passes_run_in_the_budgets_micro_batches(files, tmp_path,  # noqa: F811
                                                          monkeypatch):
    """Under a token budget, pi_ref's and pi_t's passes (no gradient) go in the update's
    micro-batches too, and give the whole-batch values: a batch of long rows in one forward would
    otherwise set the peak memory."""
    config = make_config(files, tmp_path / "run", max_new_tokens=12, minibatch_prompts=4,
                         max_tokens_per_microbatch=12, kl_coef=0.1, rewards=[files["count_e"]])
    trainer = RebelTrainer(config)
    policy = trainer.policy
    with torch.no_grad():  # pi_t apart from pi_ref, so that a swapped pass would show
        for p in trainer.trainable_params:
            p.add_(0.05 * torch.randn_like(p))
    forwards, original = [], policy.token_log_probs
    monkeypatch.setattr(policy, "token_log_probs", lambda rollout, **kw: forwards.append(
        (len(rollout), kw.get("reference", False))) or original(rollout, **kw))
    batch = captured_batch(trainer, monkeypatch)
    parts = microbatch_rows(batch.rollout, 2, 12)
    assert len(parts) > 1
    assert sorted(forwards) == sorted([(len(p), ref) for p in parts for ref in (True, False)])
    with torch.no_grad():
        ref = original(batch.rollout, reference=True).sum(-1)
        old = original(batch.rollout).sum(-1)
    torch.testing.assert_close(batch.old_logps, old, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(batch.kl, old - ref, rtol=1e-5, atol=1e-5)
    assert (old - ref).abs().max() > 1e-3
