"""Async rollouts (training.async_rollouts, training/online/rollouts.py): batch t+1 is drawn from
the weights of iteration t, staleness is logged, a resumed run continues exactly, and unsupported
combinations are refused in one line."""
from __future__ import annotations

import json
import shutil

from types import SimpleNamespace

import pytest
import torch
from accelerate.utils import DistributedType

from rebel_rl import ConfigError, RebelConfig
from rebel_rl.policies.causal_lm.policy import CausalLMPolicy
from rebel_rl.sharding import check_sharding
from rebel_rl.training.online.loop import sharding_needs
from rebel_rl.training.online.rollouts import check_async
from rebel_rl.training.online.loop import RebelTrainer, resume
from test_training import files, make_config  # noqa: F401 (fixture)


def metrics_lines(run_dir) -> list[dict]:
    """The run's per-iteration metrics without timings (which differ between runs)."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    timed = ("time", "tokens_per_second")
    return [{k: v for k, v in row.items() if not k.startswith(timed)} for row in rows]


def sequence_logps(trainer, rollout, version: int) -> torch.Tensor:
    """log pi(y) per sequence under the trainer's current weights (`version` updates seen)."""
    assert trainer.iteration == version
    return trainer.policy.token_log_probs(rollout).sum(-1)


def async_config(files, run_dir, **overrides):  # noqa: F811
    """A tiny run whose weights move enough in one update to change greedy-ish samples."""
    values = dict(rewards=["length"], learning_rate=0.2, top_k=4, max_new_tokens=6,
                  async_rollouts=1)
    values.update(overrides)
    return make_config(files, run_dir, **values)


def test_batch_t_plus_1_is_drawn_by_the_weights_of_iteration_t(files, tmp_path):  # noqa: F811
    runs = tmp_path / "runs"
    async_run = RebelTrainer(async_config(files, runs / "async", num_iterations=3))
    first = async_run.step()[0]
    drawn = async_run.rollouts.pending  # batch 1, drawn before update 0
    with torch.no_grad():  # (its sampler_logps were taken before update 0, under the weights 0)
        trained = sequence_logps(async_run, drawn.rollout, 1)  # what step 2 trains from
    second = async_run.step()[0]
    assert [first["async/staleness"], second["async/staleness"]] == [0, 1]
    gap = (drawn.sampler_logps - trained).abs().mean()
    assert second["async/logprob_gap"] == pytest.approx(float(gap), rel=1e-5) and gap > 0
    assert async_run.rollouts.pending.version == 1  # batch 2, drawn before update 1
    drawn_async = async_run.rollouts.pending.rollout.completions

    sync_run = RebelTrainer(async_config(files, runs / "sync", async_rollouts=0))
    with torch.no_grad():  # the weights 0 (a fresh run) give batch 1's recorded sampler log-probs
        assert torch.allclose(sequence_logps(sync_run, drawn.rollout, 0), drawn.sampler_logps)
    sync_run.step()  # weights after one update: the same in both runs (same batch 0)
    assert sync_run._draw(2).completions == drawn_async
    sync_run.step()  # weights after two (sync) updates: batch 2 would differ
    assert sync_run._draw(2).completions != drawn_async
    assert "async/staleness" not in sync_run.step()[0]


@pytest.mark.parametrize("algorithm", ["rebel", "grpo"])
def test_one_async_run_trains(files, tmp_path, algorithm):  # noqa: F811
    run_dir = tmp_path / algorithm
    RebelTrainer(async_config(files, run_dir, algorithm=algorithm)).train()
    rows = metrics_lines(run_dir)
    assert [row["async/staleness"] for row in rows] == [0, 1]
    assert "async/logprob_gap" not in rows[0] and rows[1]["async/logprob_gap"] > 0


def test_resume_after_iteration_2_matches_the_uninterrupted_run(files, tmp_path):  # noqa: F811
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    RebelTrainer(async_config(files, straight, num_iterations=4, save_every=2)).train()
    RebelTrainer(async_config(files, stopped, num_iterations=4, save_every=2)).train()
    shutil.rmtree(stopped / "checkpoints" / "iter-000004")  # as if killed after iteration 2
    resume(stopped)
    assert metrics_lines(stopped) == metrics_lines(straight)
    assert [row["async/staleness"] for row in metrics_lines(stopped)] == [0, 1, 1, 1]


@pytest.mark.parametrize("overrides, words", [
    ({"async_rollouts": 2}, "async_rollouts=2 is not supported"),
    ({"environment": "builtin:guess_number"}, "environments"),
])
def test_unsupported_combinations_are_refused(files, tmp_path, overrides, words):  # noqa: F811
    with pytest.raises(ConfigError, match=words) as error:
        RebelTrainer(async_config(files, tmp_path / "run", **overrides))
    assert "\n" not in str(error.value)


def test_colocated_vllm_is_refused_and_the_error_says_what_works():
    """vllm_server overlaps (tests/test_async_overlap.py); colocated vllm would share the cores."""
    with pytest.raises(ConfigError, match="generation_backend vllm: use vllm_server .* hf"):
        check_async(1, episodes=False, backend="vllm", images=False, processes=1)
    check_async(1, episodes=False, backend="vllm_server", images=False, processes=1)


def test_more_than_one_process_and_fsdp2_are_refused():
    with pytest.raises(ConfigError, match="async_rollouts runs on one process, not 2"):
        check_async(1, episodes=False, backend="hf", images=False, processes=2)
    check_async(0, episodes=False, backend="hf", images=False, processes=2)  # off: anything goes
    state = SimpleNamespace(distributed_type=DistributedType.FSDP,
                            fsdp_plugin=SimpleNamespace(fsdp_version=2))
    needs = sharding_needs(RebelConfig(async_rollouts=1), CausalLMPolicy.supports)
    with pytest.raises(ConfigError, match="async_rollouts is not supported under FSDP"):
        check_sharding(SimpleNamespace(state=state), needs)
    check_sharding(SimpleNamespace(state=state), sharding_needs(RebelConfig(),
                                                                CausalLMPolicy.supports))
