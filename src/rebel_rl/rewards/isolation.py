"""Rewards that cannot hang a run: a time-out per call in worker processes; async rewards awaited.

A `module:fn` or `file.py:fn` reward with a time-out runs in spawned processes: a pool of
`reward_workers` persistent workers per reward (RewardPool), each worker killed and restarted after
a call runs past the time-out. A batch is split into one contiguous chunk of rows per worker, and
each chunk is one call (the TRL convention: lists of prompts, completions and columns) with its own
time-out, so a hung chunk costs only its own rows. A worker exits when its parent dies (the kernel's
parent-death signal on Linux, and a thread polling its parent's pid), so a run killed with SIGKILL
leaves no orphan. An `async def` reward is awaited, once per batch as TRL calls reward functions.
This module imports no torch: a worker starts in well under a second plus what the reward imports.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import multiprocessing
import os
import signal
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from rebel_rl.errors import RewardError, first_line
from rebel_rl.rewards.functions import load_reward_function

START_TIMEOUT = 120.0  # seconds a worker may take to import the reward's file (not part of a call)
PARENT_POLL = 0.5  # seconds between a worker's checks that its parent is still alive


class RewardFailureWarning(RuntimeWarning):
    """A reward call timed out or failed and its samples got reward_failure_score (once per reward).
    Not a UserWarning: the command line silences those from libraries, and this one is ours."""


class RewardWorkersWarning(RuntimeWarning):
    """reward_workers is more than the CPU cores this process may use (once per process)."""


class RewardTimeout(Exception):
    """A reward call ran past its time-out (the worker that ran it was killed)."""


def is_async_reward(function: Callable) -> bool:
    """Whether `function` (or its `__call__`) is an `async def`: TRL's test for async rewards."""
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None)
    )


def run_coroutine(coroutine: Any) -> Any:
    """Run `coroutine` to completion with asyncio.run, in a helper thread when this thread already
    runs an event loop (a notebook), where asyncio.run would refuse."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def call_reward_function(function: Callable, prompts: list, completions: list,
                         columns: dict[str, Any]) -> Any:
    """Call a TRL-style reward once for the batch, awaiting its result if it is awaitable."""
    output = function(prompts, completions, **columns)
    if inspect.isawaitable(output):
        output = run_coroutine(_awaited(output))
    return output


async def _awaited(awaitable: Any) -> Any:
    """A coroutine awaiting `awaitable` (asyncio.run takes coroutines, not every awaitable)."""
    return await awaitable


def _plain(output: Any) -> Any:
    """A reward's output in a form that pickles without torch or numpy on the other side."""
    return output.tolist() if hasattr(output, "tolist") else list(output)


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker as soon as its parent is gone (reparented: a different parent pid)."""
    while os.getppid() == parent_pid:
        time.sleep(PARENT_POLL)
    os._exit(0)


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this worker when its parent dies (prctl PR_SET_PDEATHSIG), which also
    ends a reward stuck in C code that holds the GIL (a backtracking regex), where the polling
    thread cannot run. Elsewhere only the polling thread guards; a parent already gone ends it.
    The signal follows the parent thread that started the worker: should that thread end first,
    the worker is killed and the next call starts a fresh one (rewards are scored from the
    trainer's main thread, so this does not happen in a run)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL))  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        pass
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(0)


def _worker_main(spec: str, connection: Any, parent_pid: int) -> None:
    """The worker process: load the reward, then answer (prompts, completions, columns) requests
    with ("ok", values) or ("error", "Type: first line") until the pipe closes."""
    _die_with_parent(parent_pid)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        function = load_reward_function(spec)
    except RewardError as exc:
        connection.send(("error", str(exc)))
        return
    connection.send(("ready", None))
    while True:
        try:
            request = connection.recv()
        except EOFError:
            return
        prompts, completions, columns = request
        try:
            connection.send(("ok", _plain(call_reward_function(function, prompts, completions,
                                                                 columns))))
        except Exception as exc:  # the reward's own error, sent back as one line
            connection.send(("error", f"{type(exc).__name__}: {first_line(exc)}"))


class RewardWorker:
    """One reward function in a persistent spawned process, each call bounded by `timeout` seconds.

    `submit` sends a batch; `result` waits for it until the deadline, and on a time-out kills the
    process (the next `submit` starts a fresh one) and raises RewardTimeout.
    """

    def __init__(self, name: str, spec: str, timeout: float) -> None:
        """Remember the reward; its process starts on the first `submit`."""
        self.name, self.spec, self.timeout = name, spec, timeout
        self._process: Any = None
        self._connection: Any = None
        self._deadline: float | None = None
        self._ready = False

    def launch(self) -> None:
        """Spawn the worker unless one is running, without waiting for it: a pool launches all of
        its workers before the first waits, so they import the reward side by side."""
        if self._process is not None and self._process.is_alive():
            return
        self.close()
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        # daemon: multiprocessing ends it when this process exits normally
        process = context.Process(target=_worker_main, args=(self.spec, child_end, os.getpid()),
                                  name=f"rebel-reward-{self.name}", daemon=True)
        process.start()
        child_end.close()
        self._process, self._connection = process, parent_end
        weakref.finalize(self, _kill, process)

    def _wait_ready(self) -> None:
        """Wait until the launched worker has imported the reward (not counted in a call)."""
        if self._ready:
            return
        if not self._connection.poll(START_TIMEOUT):
            self.close()
            raise RewardError(
                f"reward '{self.name}': its worker did not start in {START_TIMEOUT:g} s"
            )
        status, detail = self._receive()
        if status != "ready":
            self.close()
            raise RewardError(detail)
        self._ready = True

    def submit(self, prompts: list, completions: list, columns: dict[str, Any]) -> None:
        """Send one batch to the worker (starting it if needed); its time-out starts now."""
        self.launch()
        self._wait_ready()
        try:
            self._connection.send((prompts, completions, columns))
        except Exception as exc:  # pickling: a column or an extra the worker cannot receive
            raise RewardError(
                f"reward '{self.name}': its inputs cannot be sent to its worker process "
                f"({type(exc).__name__}: {first_line(exc)}); unset reward_timeout"
            ) from None
        self._deadline = time.monotonic() + self.timeout

    def result(self) -> Any:
        """The submitted batch's output: RewardTimeout past the deadline, RewardError if it
        raised."""
        assert self._deadline is not None, "result() without submit()"
        remaining, self._deadline = max(0.0, self._deadline - time.monotonic()), None
        if not self._connection.poll(remaining):
            self.close()
            raise RewardTimeout(f"reward '{self.name}' timed out after {self.timeout:g} s")
        status, detail = self._receive()
        if status != "ok":
            raise RewardError(f"reward '{self.name}' raised {detail}")
        return detail

    def _receive(self) -> tuple[str, Any]:
        """One message from the worker; a worker that died mid-call is a RewardError."""
        try:
            return self._connection.recv()
        except (EOFError, OSError):
            self._process.join(timeout=5)
            code = self._process.exitcode
            self.close()
            raise RewardError(
                f"reward '{self.name}': its worker process died (exit code {code}); a script that "
                "starts training needs `if __name__ == '__main__':` (docs/rewards.md)"
            ) from None

    def close(self) -> None:
        """Kill the worker process, if any (idle or stuck, it holds nothing worth keeping)."""
        if self._process is not None:
            _kill(self._process)
            self._connection.close()
        self._process = self._connection = None
        self._ready = False


def _kill(process: Any) -> None:
    """Kill a worker process and reap it."""
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


class RewardPool:
    """One reward over `size` RewardWorkers: `submit` splits a batch into contiguous chunks of rows
    (one per worker, sizes differing by at most one) and sends each as one call with its own
    time-out; `collect` returns each chunk's output or exception, in row order. A timed-out
    worker is killed and replaced on the next submit; the other chunks keep their results.
    """

    def __init__(self, name: str, spec: str, timeout: float, size: int = 1) -> None:
        """Remember the reward; the workers start on the first `submit`."""
        self.workers = [RewardWorker(name, spec, timeout) for _ in range(size)]
        self._pending: list[tuple[int, int, Any]] = []

    def submit(self, prompts: list, completions: list, columns: dict[str, Any]) -> None:
        """Send one chunk of the batch to each worker; `columns` values that are lists or tuples
        aligned with the rows (dataset columns, completion_ids) are split with them, any other
        value (trainer_state) goes whole to every chunk."""
        bounds = chunk_bounds(len(completions), len(self.workers))
        busy = self.workers[:len(bounds)]
        for worker in busy:
            worker.launch()
        self._pending = [
            (start, stop, outcome(worker.submit, prompts[start:stop], completions[start:stop],
                                  _rows(columns, start, stop, len(completions))))
            for worker, (start, stop) in zip(busy, bounds)
        ]

    def collect(self) -> list[tuple[int, int, Any]]:
        """(start, stop, output or the exception its call ended with) per chunk, in row order."""
        chunks, self._pending = self._pending, []
        return [(start, stop, result if isinstance(result, BaseException)
                 else outcome(worker.result))
                for worker, (start, stop, result) in zip(self.workers, chunks)]

    def close(self) -> None:
        """Stop every worker of the pool."""
        for worker in self.workers:
            worker.close()


def chunk_bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """`rows` split into min(parts, rows) contiguous (start, stop) ranges whose sizes differ by at
    most one, larger first; an empty batch is one empty range (the reward is still called)."""
    parts = max(1, min(parts, rows))
    size, extra = divmod(rows, parts)
    bounds, start = [], 0
    for index in range(parts):
        stop = start + size + (index < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def _rows(columns: dict[str, Any], start: int, stop: int, count: int) -> dict[str, Any]:
    """The keyword arguments of rows start:stop: row-aligned lists sliced, the rest whole."""
    return {key: value[start:stop] if isinstance(value, (list, tuple)) and len(value) == count
            else value for key, value in columns.items()}


def outcome(function: Callable, *args: Any) -> Any:
    """`function(*args)`, or the exception it raised (handled per reward by the RewardSet)."""
    try:
        return function(*args)
    except Exception as exc:
        return exc


def available_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_WARNED_WORKERS: set[tuple[int, int]] = set()


def check_worker_count(workers: int) -> None:
    """Warn (once per process) when `workers` per reward is more than the available cores: a
    warning, not an error, because rewards that wait on I/O (an API judge, a sandbox) gain from
    more workers than cores, and a laptop's core count should not fail a config that runs."""
    cores = available_cores()
    if workers > cores and (workers, cores) not in _WARNED_WORKERS:
        _WARNED_WORKERS.add((workers, cores))
        warnings.warn(f"reward_workers={workers} is more than the {cores} CPU cores this process "
                      "may use: CPU-bound rewards will share cores (lower reward_workers to "
                      f"{cores}); rewards that wait on I/O are fine", RewardWorkersWarning,
                      stacklevel=3)
