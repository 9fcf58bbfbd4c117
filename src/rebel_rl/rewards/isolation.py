"""Rewards that cannot hang a run: a time-out per call in a worker process; async rewards awaited.

A `module:fn` or `file.py:fn` reward with a time-out runs in its own spawned process (one persistent
worker per reward, killed and restarted after a call runs past the time-out). The worker exits when
its parent dies (it polls its parent's pid), so a run killed with SIGKILL leaves no orphan. An
`async def` reward is awaited, once per batch as TRL calls reward functions. This module imports no
torch: a worker starts in well under a second plus whatever the user's reward file imports.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import multiprocessing
import os
import threading
import time
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


def _worker_main(spec: str, connection: Any, parent_pid: int) -> None:
    """The worker process: load the reward, then answer (prompts, completions, columns) requests
    with ("ok", values) or ("error", "Type: first line") until the pipe closes."""
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

    def _start(self) -> None:
        """Spawn the worker and wait until it has imported the reward (not counted in a call)."""
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        # daemon: multiprocessing ends it when this process exits normally
        process = context.Process(target=_worker_main, args=(self.spec, child_end, os.getpid()),
                                  name=f"rebel-reward-{self.name}", daemon=True)
        process.start()
        child_end.close()
        self._process, self._connection = process, parent_end
        weakref.finalize(self, _kill, process)
        if not parent_end.poll(START_TIMEOUT):
            self.close()
            raise RewardError(
                f"reward '{self.name}': its worker did not start in {START_TIMEOUT:g} s"
            )
        status, detail = self._receive()
        if status != "ready":
            self.close()
            raise RewardError(detail)

    def submit(self, prompts: list, completions: list, columns: dict[str, Any]) -> None:
        """Send one batch to the worker (starting it if needed); its time-out starts now."""
        if self._process is None or not self._process.is_alive():
            self.close()
            self._start()
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


def _kill(process: Any) -> None:
    """Kill a worker process and reap it."""
    if process.is_alive():
        process.kill()
    process.join(timeout=5)
