"""Async rollouts that overlap (training/online/rollouts.py, `generation_backend: vllm_server`):
the server draws batch t+1 while the trainer runs update t, the weights are pushed only once that
draw is in, a server dying mid-draw is one line and `resume` continues, and a resumed run logs
what an uninterrupted one does. No vLLM: a stand-in server (tests/stand_in_server.py) answers.
"""
from __future__ import annotations

import shutil
import time

import pytest
import torch

from rebel_rl import ConfigError
from rebel_rl.policies.base import SampleHandle
from rebel_rl.training.online.loop import RebelTrainer, resume
from rebel_rl.training.run.checkpoint import list_checkpoints
from stand_in_server import LOGPROB, stand_in_for
from test_async_rollouts import metrics_lines
from test_training import files, make_config  # noqa: F401 (fixture)


@pytest.fixture
def slow_server(files):  # noqa: F811
    server = stand_in_for(files["model"], delay=0.4)
    yield server
    server.shutdown()


def server_config(files, run_dir, url, **overrides):  # noqa: F811
    values = dict(rewards=["length"], learning_rate=0.2, top_k=4, max_new_tokens=6,
                  async_rollouts=1, num_iterations=3, generation_backend="vllm_server",
                  vllm_server_url=url)
    values.update(overrides)
    return make_config(files, run_dir, **values)


def timed_updates(trainer, monkeypatch) -> list[tuple[float, float]]:
    """Record the start and end of each of the trainer's updates, made 0.2 s longer (as a larger
    model's would be) so that the server's answer cannot come before the update ends."""
    update, times = trainer.update, []

    def timed(batch):
        start = time.perf_counter()
        result = update(batch)
        time.sleep(0.2)
        times.append((start, time.perf_counter()))
        return result

    monkeypatch.setattr(trainer, "update", timed)
    return times


def test_the_server_draws_batch_t_plus_1_during_update_t(files, tmp_path, slow_server,  # noqa: F811
                                                         monkeypatch):
    trainer = RebelTrainer(server_config(files, tmp_path / "run", slow_server.url))
    updates = timed_updates(trainer, monkeypatch)
    rows = [trainer.step()[0] for _ in range(2)]
    pending = trainer.rollouts.pending  # batch 2, drawn during update 1: the server's log-probs
    lengths = pending.rollout.completion_mask.sum(-1).float()
    assert torch.allclose(pending.sampler_logps, LOGPROB * lengths)
    rows.append(trainer.step()[0])
    draws = slow_server.intervals("/generate")  # batch 0 in line, then 1 and 2 ahead
    assert len(draws) == 3 and len(updates) == 3
    for (draw_start, draw_end), (update_start, update_end) in zip(draws[1:], updates):
        assert draw_start < update_end and update_start < draw_end  # in flight during the update
    pushes = slow_server.intervals("/update_weights")
    assert pushes  # the first draw's push (the server may hold other weights), then after updates
    for push_start, push_end in pushes:  # never while a draw is in flight
        assert all(push_end <= start or push_start >= end for start, end in draws)
    assert [row["async/staleness"] for row in rows] == [0, 1, 1]
    # The gap compares the server's recorded log-probs with log pi_t.
    assert "async/logprob_gap" not in rows[0] and rows[1]["async/logprob_gap"] > 0


def test_weights_are_not_pushed_before_the_draw_in_flight_is_joined(files, tmp_path,  # noqa: F811
                                                                   slow_server):
    """An evaluation's sample right after an update waits for the draw in flight first."""
    trainer = RebelTrainer(server_config(files, tmp_path / "run", slow_server.url))
    trainer.step()
    handle = trainer.policy.start_sample(["hello there"], 2)  # as the loop's prefetch does
    assert not handle.done()
    trainer.policy.weights_updated()
    trainer.policy.sample(["hello there"], 1)  # pushes the new weights: after the draw ended
    draw_end = slow_server.intervals("/generate")[-2][1]  # the handle's (the sample's is last)
    push_start = slow_server.intervals("/update_weights")[-1][0]
    assert push_start >= draw_end and handle.done() and len(handle.result()) == 2


def test_a_finished_handle_keeps_hf_in_line(files, tmp_path):  # noqa: F811
    """hf draws before the update, as before: its handle is done when returned."""
    trainer = RebelTrainer(server_config(files, tmp_path / "run", "", generation_backend="hf"))
    handle = trainer._start_draw(1)
    assert type(handle) is SampleHandle and handle.done()


def test_a_server_dying_mid_draw_is_one_line_and_resume_continues(files, tmp_path):  # noqa: F811
    server = stand_in_for(files["model"], delay=0.1)
    calls = []

    def length_killing_the_server(prompts, completions, **kwargs):
        calls.append(len(completions))
        server.dead = len(calls) == 2  # iteration 2 has sampled: the draw of batch 3 fails
        return [float(len(c)) for c in completions]

    config = server_config(files, tmp_path / "run", server.url, rewards=[], save_every=1)
    try:
        with pytest.raises(ConfigError) as caught:
            RebelTrainer(config, reward_funcs=[length_killing_the_server]).train()
        message = str(caught.value)
        assert message.startswith(f"the vLLM server {server.url} does not answer /generate (")
        assert "\n" not in message and "--resume" in message
        assert [row["iteration"] for row in metrics_lines(tmp_path / "run")] == [1]
        assert list_checkpoints(tmp_path / "run" / "checkpoints")[-1].name == "iter-000001"
        server.dead = False
        RebelTrainer(config, reward_funcs=[length_killing_the_server], resume=True).train()
    finally:
        server.shutdown()
    assert [row["iteration"] for row in metrics_lines(tmp_path / "run")] == [1, 2, 3]


def test_resume_after_iteration_2_matches_the_uninterrupted_run(files, tmp_path):  # noqa: F811
    server = stand_in_for(files["model"])
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    try:
        for run_dir in (straight, stopped):
            RebelTrainer(server_config(files, run_dir, server.url, num_iterations=4,
                                       save_every=2)).train()
        shutil.rmtree(stopped / "checkpoints" / "iter-000004")  # as if killed after iteration 2
        resume(stopped)
    finally:
        server.shutdown()
    assert metrics_lines(stopped) == metrics_lines(straight)
    assert [row["async/staleness"] for row in metrics_lines(stopped)] == [0, 1, 1, 1]
