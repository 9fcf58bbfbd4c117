"""Reward worker pools (issue 21, item 2): `reward_workers` processes score contiguous chunks of a
batch, a hung chunk loses only its rows, a limit on consecutive failures stops the run with one line,
and a trainer killed with -9 leaves no worker behind."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from rebel_rl.config import RebelConfig
from rebel_rl.errors import ConfigError, RewardError
from rebel_rl.rewards import RewardSet
from rebel_rl.rewards import isolation
from rebel_rl.rewards.isolation import RewardFailureWarning, RewardWorkersWarning, chunk_bounds
from reward_files import score  # the reward_file fixture comes from conftest.py


ROWS = ["a b", "c", "d e f", "g h i j", "k"]
ANSWERS = [0.5, 1.5, 2.5, 3.5, 4.5]
IDS = [[1], [2, 3], [], [4], [5, 6]]


@pytest.mark.parametrize("rows, parts, bounds", [
    (5, 2, [(0, 3), (3, 5)]), (5, 3, [(0, 2), (2, 4), (4, 5)]), (2, 4, [(0, 1), (1, 2)]),
    (4, 1, [(0, 4)]), (0, 3, [(0, 0)]),
])
def test_chunk_bounds_are_contiguous_and_balanced(rows, parts, bounds):
    assert chunk_bounds(rows, parts) == bounds


MORE_WORKERS_THAN_CORES = pytest.mark.filterwarnings(
    "ignore::rebel_rl.rewards.isolation.RewardWorkersWarning")


@MORE_WORKERS_THAN_CORES
@pytest.mark.parametrize("workers", [1, 2, 3])
def test_pool_scores_every_row_in_order_as_without_isolation(reward_file, workers):
    """Columns and completion_ids are split with the rows; the scores match an in-process call."""
    def scores(reward_set: RewardSet) -> list[float]:
        total = reward_set(["p"] * 5, ROWS, {"answer": ANSWERS}, {"completion_ids": IDS})[0]
        reward_set.close()
        return total.tolist()

    expected = [10.0 * len(c.split()) + a + sum(ids) for c, a, ids in zip(ROWS, ANSWERS, IDS)]
    assert scores(RewardSet([f"{reward_file}:tagged"])) == expected
    assert scores(RewardSet([f"{reward_file}:tagged"], timeout=30.0, workers=workers)) == expected


def test_pool_calls_one_worker_per_contiguous_chunk(reward_file):
    rewards = RewardSet([f"{reward_file}:pid"], timeout=30.0, workers=2)
    pids = rewards(["p"] * 5, ROWS)[0].tolist()
    rewards.close()
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4]  # chunks of 3 and 2 rows
    assert os.getpid() not in pids


@MORE_WORKERS_THAN_CORES
def test_a_hung_chunk_loses_only_its_own_rows(reward_file):
    """Four workers, one row each: the row that hangs scores the failure score, the others keep
    theirs within one time-out, and the next batch is scored by a replacement worker."""
    rewards = RewardSet([f"{reward_file}:hang_on_x"], timeout=0.5, failure_score=-1.0, workers=4)
    rewards(["p"] * 4, ["a", "b c", "d", "e"])  # spawns the workers (outside the time-out)
    start = time.monotonic()
    with pytest.warns(RewardFailureWarning, match="reward 'hang_on_x' timed out after 0.5 s"):
        total, _ = rewards(["p"] * 4, ["a b", "x", "c", "d e f"])
    assert time.monotonic() - start < 0.5 + 2.0
    assert total.tolist() == [2.0, -1.0, 1.0, 3.0]
    assert rewards.take_counts()["rewards/hang_on_x/timeouts"] == 1.0  # one call of four
    assert rewards(["p"] * 4, ["a b", "y z", "c", "d"])[0].tolist() == [2.0, 2.0, 1.0, 1.0]
    rewards.close()


def test_consecutive_failures_past_the_limit_stop_naming_the_reward(reward_file):
    rewards = RewardSet([f"{reward_file}:boom", f"{reward_file}:words"], timeout=5.0,
                        failure_score=0.0, max_consecutive_failures=2)
    with pytest.warns(RewardFailureWarning):
        score(rewards)  # one failure: scored 0
    with pytest.raises(RewardError) as error:
        score(rewards)
    assert str(error.value) == (
        "reward 'boom' failed 2 calls in a row (reward_max_consecutive_failures=2), the last: "
        "reward 'boom' raised ValueError: verifier crashed; fix the reward or raise "
        "reward_max_consecutive_failures")
    rewards.close()


def test_a_success_resets_the_count_of_failures_in_a_row(tmp_path):
    flag = tmp_path / "fail"
    path = tmp_path / "sometimes.py"
    path.write_text(f"import os\ndef sometimes(prompts, completions, **kw):\n"
                    f"    if os.path.exists({str(flag)!r}):\n        raise ValueError('no')\n"
                    f"    return [1.0] * len(completions)\n")
    rewards = RewardSet([f"{path}:sometimes"], failure_score=0.0, max_consecutive_failures=2)
    for fails in [True, False, True, False, True]:  # never two in a row
        flag.touch() if fails else flag.unlink()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RewardFailureWarning)
            assert score(rewards)[0].tolist() == [0.0 if fails else 1.0] * 3
    with pytest.raises(RewardError, match="failed 2 calls in a row"):
        score(rewards)


@pytest.mark.parametrize("workers, warns", [(2, True), (1, False)])
def test_more_workers_than_cores_warns_naming_both(reward_file, monkeypatch, workers, warns):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    monkeypatch.setattr(isolation, "_WARNED_WORKERS", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        RewardSet([f"{reward_file}:words"], timeout=1.0, workers=workers).close()
    messages = [str(w.message) for w in caught if w.category is RewardWorkersWarning]
    assert messages == ([
        "reward_workers=2 is more than the 1 CPU cores this process may use: CPU-bound rewards "
        "will share cores (lower reward_workers to 1); rewards that wait on I/O are fine"
    ] if warns else [])


@pytest.mark.parametrize("overrides, message", [
    ({"reward_workers": 2}, "reward_workers=2 needs reward_timeout"),
    ({"reward_workers": 0, "reward_timeout": 1.0}, "reward_workers must be >= 1, got 0"),
    ({"reward_max_consecutive_failures": 0}, "reward_max_consecutive_failures must be >= 1"),
])
def test_bad_pool_options_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        RebelConfig(rewards=["length"], **overrides).validate()


def test_train_stops_at_the_failure_limit_and_keeps_its_run_folder(tmp_path, capfd):
    """`rebel train` whose reward fails from its second call on: the second iteration scores the
    failure score and is logged and checkpointed; the third stops the run with one line (exit 2),
    and the metrics and checkpoints written before stay."""
    import json

    from rebel_rl.cli import main
    from cli_run import train_args
    from tiny import save_tiny_causal_lm, write_jsonl

    calls = tmp_path / "calls"
    path = tmp_path / "second.py"
    path.write_text(textwrap.dedent(f"""
        def fails_after_one(prompts, completions, **kw):
            with open({str(calls)!r}, "a") as handle:
                handle.write("x")
            with open({str(calls)!r}) as handle:
                if len(handle.read()) > 1:
                    raise ValueError("broken")
            return [1.0] * len(completions)
    """))
    files = {"model": str(save_tiny_causal_lm(tmp_path / "tiny")),
             "prompts": write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in "abcd"])}
    run_dir = tmp_path / "run"
    argv = train_args(files, run_dir, "--num_iterations", "5", "--save_every", "1",
                      "--rewards", f"{path}:fails_after_one", "--reward_timeout", "30",
                      "--reward_workers", "1", "--reward_failure_score", "-1",
                      "--reward_max_consecutive_failures", "2")
    capfd.readouterr()
    with pytest.warns(RewardFailureWarning):
        assert main(argv) == 2
    errors = [line for line in capfd.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == ["error: reward 'fails_after_one' failed 2 calls in a row "
                      "(reward_max_consecutive_failures=2), the last: reward 'fails_after_one' "
                      "raised ValueError: broken; fix the reward or raise "
                      "reward_max_consecutive_failures"]
    lines = [json.loads(text) for text in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [line["rewards/fails_after_one"] for line in lines] == [1.0, -1.0]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [
        "iter-000001", "iter-000002"]
    assert len(calls.read_text()) == 3 and not (run_dir / "final").exists()


def _children(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (read from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting to be reaped does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_killed_train_leaves_no_worker_processes(tmp_path):
    """`kill -9` a `rebel train` while both of its reward workers are stuck in a regex that holds
    the GIL (their polling thread cannot run): every process it started is gone within seconds."""
    from tiny import save_tiny_causal_lm, write_jsonl

    from cli_run import train_args

    busy = tmp_path / "busy"
    busy.mkdir()
    path = tmp_path / "backtracking_reward.py"  # not regex.py: cwd shadows the package
    path.write_text(textwrap.dedent(f"""
        import os, re
        def backtrack(prompts, completions, **kw):
            open(os.path.join({str(busy)!r}, str(os.getpid())), "w").close()
            re.match(r"(a+)+$", "a" * 64 + "b")  # exponential: holds the GIL for ages
            return [0.0] * len(completions)
    """))
    files = {"model": str(save_tiny_causal_lm(tmp_path / "tiny")),
             "prompts": write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": p} for p in "abcd"])}
    argv = train_args(files, tmp_path / "run", "--rewards", f"{path}:backtrack",
                      "--reward_timeout", "600", "--reward_workers", "2")
    trainer = subprocess.Popen([sys.executable, "-m", "rebel_rl.cli", *argv], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 240
        while len(list(busy.iterdir())) < 2 and trainer.poll() is None:
            assert time.monotonic() < deadline, "the reward workers never started"
            time.sleep(0.2)
        assert trainer.poll() is None, trainer.stderr.read()
        started = _children(trainer.pid)
        workers = {int(p.name) for p in busy.iterdir()}
        assert workers <= set(started)  # the busy workers are the trainer's own children
    finally:
        trainer.kill()
        trainer.wait()
    deadline = time.monotonic() + 5
    while any(map(_alive, started)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in started if _alive(pid)] == [], "processes outlived the killed trainer"
