"""Environments that cannot hang or derail a run: every reset/step is shape-checked, optionally
bounded by a time-out, and a failure either ends the episode with a fixed score or raises one line.

Why a thread, not a worker process (rewards/isolation.py uses processes): an environment is a
stateful object made fresh for every episode. In a process, its state would have to live in the
worker (one spawn per episode, ~1 s plus the user's imports, and every message pickled both ways)
or be shipped back and forth each step. A thread runs the call on the very object, at no start-up
cost. The price: Python cannot kill a thread, so a step that hangs forever keeps its (daemon)
thread until it returns or the run ends; the episode is over for us either way and the object is
never touched again. An environment that can hang for good on a shared resource should run its
own work in a subprocess.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from rebel_rl.environments.loading import environment_name, load_environment, make
from rebel_rl.errors import EpisodeError, first_line

ROLES = ("system", "user", "assistant", "tool")


class StepTimeout(Exception):
    """A reset or step call ran past its time-out."""


def call_with_timeout(function: Callable[..., Any], args: tuple, timeout: float | None) -> Any:
    """`function(*args)`, in a daemon thread when `timeout` is set: StepTimeout if it has not
    returned after `timeout` seconds; its own exception re-raised as it is."""
    if timeout is None:
        return function(*args)
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args)
        except BaseException as exc:  # carried to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="rebel-environment-call")
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StepTimeout(f"timed out after {timeout:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def check_messages(name: str, where: str, messages: Any) -> list[dict[str, Any]]:
    """`messages` if it is a list of {"role", "content": str} dicts; otherwise one EpisodeError
    line naming the environment, the call and the first bad item."""
    if not isinstance(messages, list):
        raise EpisodeError(f"environment '{name}' {where} returned a "
                               f"{type(messages).__name__}, not a list of chat messages")
    for index, message in enumerate(messages):
        if (not isinstance(message, dict) or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)):
            raise EpisodeError(
                f"environment '{name}' {where} message {index} is {str(message)[:80]!r}: each "
                f"message needs a role in {', '.join(ROLES)} and a string content"
            )
    return messages


def check_step_output(name: str, where: str, output: Any) -> tuple[list, float, bool]:
    """`output` as (messages, reward, done) if it is a (list, finite number, bool) triple;
    otherwise one EpisodeError line saying what came back instead."""
    if not isinstance(output, tuple) or len(output) != 3:
        raise EpisodeError(f"environment '{name}' {where} returned {str(output)[:80]!r}: "
                               "step must return a (messages, reward, done) tuple")
    messages, reward, done = output
    check_messages(name, where, messages)
    if isinstance(reward, bool) or not isinstance(reward, (int, float)) or not math.isfinite(
            reward):
        raise EpisodeError(f"environment '{name}' {where} returned reward {reward!r}: "
                               "it must be a finite number")
    if type(done).__name__ not in ("bool", "bool_"):  # bool_: numpy's, without importing numpy
        raise EpisodeError(f"environment '{name}' {where} returned done={done!r}: it must be "
                               "True or False")
    return messages, float(reward), bool(done)


class EnvironmentCounts:
    """Time-outs and failures since the last `take`, shared by all episodes of one factory."""

    def __init__(self) -> None:
        self.timeouts = self.failures = 0
        self._lock = threading.Lock()  # episodes may run in threads of their own

    def add(self, timeout: bool) -> None:
        """Count one failed call (a time-out is also a failure)."""
        with self._lock:
            self.failures += 1
            self.timeouts += int(timeout)

    def take(self) -> dict[str, float]:
        """`environment/timeouts` and `environment/failures` since the last take, then zero."""
        with self._lock:
            counts = {"environment/timeouts": float(self.timeouts),
                      "environment/failures": float(self.failures)}
            self.timeouts = self.failures = 0
        return counts


class GuardedEnvironment:
    """One episode of `environment` with checked outputs, a time-out and a failure policy.

    With `failure_score` set, a reset or step that raises or times out ends the episode and its
    return (the sum of step rewards) becomes exactly `failure_score`; with None it raises one
    EpisodeError line. A wrong shape always raises: it is a bug that would fail every episode.
    After a failed reset, `ended` is True and the first step returns ([], failure_score, True).
    """

    def __init__(self, environment: Any, name: str, timeout: float | None = None,
                 failure_score: float | None = None,
                 counts: EnvironmentCounts | None = None) -> None:
        self.environment, self.name = environment, name
        self.timeout, self.failure_score = timeout, failure_score
        self.counts = counts if counts is not None else EnvironmentCounts()
        self.ended, self.failed, self.turn, self.episode_return = False, False, 0, 0.0

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The environment's opening messages for `row` (checked), or [] after a scored failure."""
        self.ended, self.failed, self.turn, self.episode_return = False, False, 0, 0.0
        try:
            messages = call_with_timeout(self.environment.reset, (row,), self.timeout)
        except Exception as exc:
            self._failed("reset", exc)
            return []
        return check_messages(self.name, "reset", messages)

    def step(self, assistant_message: str) -> tuple[list[dict[str, Any]], float, bool]:
        """The environment's reaction to one policy turn, checked; a failure ends the episode."""
        if self.ended:
            return [], self._closing_reward(), True
        self.turn += 1
        where = f"step {self.turn}"
        try:
            output = call_with_timeout(self.environment.step, (assistant_message,), self.timeout)
        except Exception as exc:
            self._failed(where, exc)
            return [], self._closing_reward(), True
        messages, reward, done = check_step_output(self.name, where, output)
        self.episode_return += reward
        self.ended = done
        return messages, reward, done

    def render(self, tokenizer: Any, messages: list[dict[str, Any]],
               add_generation_prompt: bool = True) -> str:
        """The dialogue as prompt text: the environment's own `render` where it has one (a
        ToolEnvironment shows its tools), else the tokenizer's chat template as it is."""
        own = getattr(self.environment, "render", None)
        if callable(own):
            return own(tokenizer, messages, add_generation_prompt=add_generation_prompt)
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)

    def _failed(self, where: str, exc: Exception) -> None:
        """Count a failed call, then end the episode (scored) or raise one line (no score)."""
        timed_out = isinstance(exc, StepTimeout)
        self.counts.add(timed_out)
        problem = (f"environment '{self.name}' {where} "
                   + (str(exc) if timed_out else f"raised {type(exc).__name__}: {first_line(exc)}"))
        if self.failure_score is None:
            fix = "; set step_failure_score to end such episodes with a fixed score instead"
            raise EpisodeError(problem + fix) from None
        self.ended = self.failed = True

    def _closing_reward(self) -> float:
        """The step reward that makes this episode's return exactly `failure_score` (0.0 for a
        step after a normal end: the episode is over and earns nothing more)."""
        if not self.failed:
            return 0.0
        reward = float(self.failure_score) - self.episode_return
        self.episode_return, self.failed = float(self.failure_score), False  # paid once
        return reward


class EnvironmentFactory:
    """What the rollout holds: `factory()` makes one guarded episode; `take_counts()` gives the
    environment/timeouts and environment/failures since the last call, for the log."""

    def __init__(self, spec: Any, step_timeout: float | None = None,
                 step_failure_score: float | None = None) -> None:
        """Load `spec` (see load_environment) once; nothing is created until the first episode."""
        self.name = environment_name(spec)
        self.factory = load_environment(spec)
        self.step_timeout, self.step_failure_score = step_timeout, step_failure_score
        self.counts = EnvironmentCounts()

    def __call__(self) -> GuardedEnvironment:
        """A fresh environment for one episode, guarded."""
        return GuardedEnvironment(make(self.factory, self.name), self.name, self.step_timeout,
                                  self.step_failure_score, self.counts)

    def take_counts(self) -> dict[str, float]:
        """environment/timeouts and environment/failures since the last take (then zeroed)."""
        return self.counts.take()


def environment_factory(config: Any) -> EnvironmentFactory | None:
    """The guarded factory an EnvironmentConfig asks for (its environment, step_timeout and
    step_failure_score), or None for single-turn runs (environment unset)."""
    if config.environment is None:
        return None
    return EnvironmentFactory(config.environment, config.step_timeout, config.step_failure_score)
