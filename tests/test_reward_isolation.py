"""Rewards that cannot hang a run (issue 21, item 2): a per-call time-out with file rewards in a
worker process, a failure score (or one line naming the reward), async rewards, logged counts."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rebel_rl.config import RebelConfig
from rebel_rl.errors import ConfigError, RewardError
from rebel_rl.rewards import RewardSet
from rebel_rl.rewards.isolation import RewardFailureWarning

from reward_files import WORDS, score  # the reward_file fixture comes from conftest.py


def test_hanging_reward_scores_the_failure_score_within_its_timeout(reward_file):
    rewards = RewardSet([f"{reward_file}:hang", f"{reward_file}:words"], timeout=1.0,
                        failure_score=-1.0)
    timed_out = r"reward 'hang' timed out after 1 s \(reward_timeout\); "
    with pytest.warns(RewardFailureWarning, match=timed_out):
        score(rewards)  # the first call also spawns the workers (outside the time-out)
    start = time.monotonic()
    total, named = score(rewards)  # warned once per reward, not per call
    assert time.monotonic() - start < 1.0 + 3.0
    assert named["hang"].tolist() == [-1.0] * 3 and named["words"].tolist() == WORDS
    assert total.tolist() == [w - 1.0 for w in WORDS]
    assert rewards.take_counts() == {"rewards/hang/timeouts": 2.0, "rewards/hang/failures": 0.0,
                                     "rewards/words/timeouts": 0.0, "rewards/words/failures": 0.0}
    assert rewards.take_counts()["rewards/hang/timeouts"] == 0.0  # counted per log line
    rewards.close()


def test_worker_is_restarted_after_a_timeout(reward_file, tmp_path):
    flag = tmp_path / "slow"
    path = tmp_path / "flaky.py"
    path.write_text(textwrap.dedent(f"""
        import os, time
        def flaky(prompts, completions, **kw):
            if os.path.exists({str(flag)!r}):
                time.sleep(3600)
            return [float(os.getpid())] * len(completions)
    """))
    rewards = RewardSet([f"{path}:flaky"], timeout=1.0, failure_score=0.0)
    first = score(rewards)[1]["flaky"][0].item()
    flag.touch()
    with pytest.warns(RewardFailureWarning):
        assert score(rewards)[1]["flaky"].tolist() == [0.0] * 3
    flag.unlink()
    second = score(rewards)[1]["flaky"][0].item()
    assert first != second and second != os.getpid()  # a fresh worker, not this process
    rewards.close()


def test_raising_reward_scores_the_failure_score_and_is_counted(reward_file):
    rewards = RewardSet([f"{reward_file}:boom"], timeout=1.0, failure_score=0.5)
    raised = "reward 'boom' raised ValueError: verifier crashed"
    with pytest.warns(RewardFailureWarning, match=raised):
        total, _ = score(rewards)
    assert total.tolist() == [0.5] * 3
    assert rewards.take_counts()["rewards/boom/failures"] == 1.0
    rewards.close()


def test_wrong_length_output_counts_as_a_failure(reward_file):
    rewards = RewardSet([f"{reward_file}:short", f"{reward_file}:words"], timeout=1.0,
                        failure_score=-2.0)
    with pytest.warns(RewardFailureWarning, match="reward 'short' returned 1 values for 3"):
        total, _ = score(rewards)
    assert total.tolist() == [w - 2.0 for w in WORDS]
    counts = rewards.take_counts()
    assert (counts["rewards/short/failures"], counts["rewards/words/failures"]) == (1.0, 0.0)
    rewards.close()


@pytest.mark.parametrize("timeout", [None, 1.0])  # in this process, and in a worker
def test_raising_reward_without_failure_score_stops_with_one_line(reward_file, timeout):
    rewards = RewardSet([f"{reward_file}:boom"], timeout=timeout)
    with pytest.raises(RewardError) as error:
        score(rewards)
    assert str(error.value) == "reward 'boom' raised ValueError: verifier crashed"
    rewards.close()


def test_timeout_without_failure_score_stops_naming_the_reward(reward_file):
    rewards = RewardSet([f"{reward_file}:hang"], timeout=1.0)
    stops = r"^reward 'hang' timed out after 1 s .*reward_failure_score"
    with pytest.raises(RewardError, match=stops):
        score(rewards)
    rewards.close()


@pytest.mark.parametrize("timeout", [None, 1.0])
def test_async_reward_is_awaited(reward_file, timeout):
    rewards = RewardSet([f"{reward_file}:async_words", f"{reward_file}:words"], weights=[1.0, -2.0],
                        timeout=timeout)
    total, named = score(rewards)
    assert named["async_words"].tolist() == WORDS
    assert total.tolist() == [-w for w in WORDS]
    rewards.close()


def test_async_callable_times_out_in_this_process(reward_file):
    from rebel_rl.rewards.functions import load_reward_function

    hang = load_reward_function(f"{reward_file}:async_hang")  # a callable: no worker, wait_for
    rewards = RewardSet([hang], timeout=1.0, failure_score=-3.0)
    with pytest.warns(RewardFailureWarning, match="timed out"):
        assert score(rewards)[0].tolist() == [-3.0] * 3
    assert rewards.take_counts()["rewards/async_hang/timeouts"] == 1.0


def test_rewards_without_a_timeout_run_in_this_process(reward_file):
    rewards = RewardSet([f"{reward_file}:pid"])
    assert score(rewards)[1]["pid"][0].item() == os.getpid()
    assert rewards.take_counts() == {}  # nothing new in the log of a run without the options


@pytest.mark.parametrize("value", [0, -1.5])
def test_non_positive_timeout_is_a_config_error(value):
    with pytest.raises(ConfigError, match=f"reward_timeout must be > 0 seconds, got {value}"):
        RebelConfig(rewards=["length"], reward_timeout=value).validate()


def test_worker_exits_when_its_parent_is_killed(reward_file, tmp_path):
    """SIGKILL the process that owns a worker stuck in a call: the worker must not outlive it."""
    script = tmp_path / "owner.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        from rebel_rl.rewards.isolation import RewardWorker
        if __name__ == "__main__":  # spawn imports the main module again in the worker
            worker = RewardWorker("hang", {reward_file + ':hang'!r}, timeout=60)
            worker.submit(["p"], ["c"], {{}})
            print(worker._process.pid, flush=True)
            worker.result()
    """))
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    worker_pid = int(owner.stdout.readline())
    owner.kill()
    owner.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and Path(f"/proc/{worker_pid}").exists():
        if (Path(f"/proc/{worker_pid}/stat").read_text().split()[2:3] or ["?"])[0] == "Z":
            break  # exited, waiting for init to reap it
        time.sleep(0.1)
    alive = Path(f"/proc/{worker_pid}").exists() and \
        Path(f"/proc/{worker_pid}/stat").read_text().split()[2] != "Z"
    assert not alive, f"worker {worker_pid} outlived its killed parent"


def test_train_with_a_hanging_reward_finishes_and_logs_it(reward_file, tmp_path, capfd):
    """`rebel train` for one iteration with a reward that never returns: the run ends, its metrics
    line scores the hanging reward at the failure score and counts one time-out."""
    import json

    from rebel_rl.cli import main
    from cli_run import train_args
    from tiny import save_tiny_causal_lm, write_jsonl

    files = {"model": str(save_tiny_causal_lm(tmp_path / "tiny")),
             "prompts": write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in "abcd"])}
    run_dir = tmp_path / "run"
    argv = train_args(files, run_dir, "--num_iterations", "1", "--rewards", f"{reward_file}:hang",
                      "length", "--reward_timeout", "1", "--reward_failure_score", "-1")
    with pytest.warns(RewardFailureWarning, match="reward 'hang' timed out"):
        assert main(argv) == 0, capfd.readouterr().err
    (line,) = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert (line["rewards/hang"], line["rewards/hang/timeouts"], line["rewards/hang/failures"]) == (
        -1.0, 1.0, 0.0)
    assert line["rewards/length/timeouts"] == 0.0 and (run_dir / "final").is_dir()


# ---------------------------------------------------------- reward_workers: a pool per reward
