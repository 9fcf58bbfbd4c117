"""Thin adapters from the two environment conventions users already have (docs/multiturn.md).

OpenEnv: `reset(**kwargs)` and `step(action)` return an Observation (fields done, reward, ...) on
the server side or a StepResult(observation, reward, done) from a client. The adapter turns the
policy's text into an Action and an observation into a user message with two small functions the
user gives, since only they know their Action and Observation classes.

TRL (GRPOTrainer's environment_factory): a class whose `reset(**row_columns)` returns text to add
to the prompt (or None) and whose public methods are the tools. The adapter is a ToolEnvironment
over the instance's bound methods, so calls, schemas and rendering are the tool path's.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from rebel_rl.environments.tools import ToolEnvironment


def _observation_text(observation: Any) -> str:
    """Default rendering of an OpenEnv observation: a text-like field if it has one, else repr."""
    for field in ("text", "message", "prompt", "content"):
        value = getattr(observation, field, None)
        if isinstance(value, str):
            return value
    return repr(observation)


class OpenEnvAdapter:
    """Our Environment over one OpenEnv environment (or client) instance.

    `action(text)` builds the env's Action from the policy's turn; `render(observation)` gives the
    user message's text (default: its text/message/prompt/content field); `reset_kwargs(row)` the
    keywords for reset (default: none, so the row only matters through the environment).
    """

    def __init__(self, environment: Any, action: Callable[[str], Any],
                 render: Callable[[Any], str] = _observation_text,
                 reset_kwargs: Callable[[dict], dict] | None = None) -> None:
        self.environment, self.action, self.render = environment, action, render
        self.reset_kwargs = reset_kwargs or (lambda row: {})

    def _unpack(self, result: Any) -> tuple[list[dict[str, Any]], float, bool]:
        """(messages, reward, done) from a StepResult or an Observation (reward None -> 0)."""
        observation = getattr(result, "observation", result)
        reward = getattr(result, "reward", None)
        done = getattr(result, "done", False)
        message = {"role": "user", "content": self.render(observation)}
        if done and callable(getattr(self.environment, "close", None)):
            self.environment.close()  # a client holds a connection; one instance, one episode
        return [message], float(reward or 0.0), bool(done)

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The first observation as the opening user message."""
        return self._unpack(self.environment.reset(**self.reset_kwargs(row)))[0]

    def step(self, assistant_message: str) -> tuple[list[dict[str, Any]], float, bool]:
        """The policy's text as an Action; the next observation as a user message."""
        return self._unpack(self.environment.step(self.action(assistant_message)))


def from_openenv(make: Callable[[], Any], action: Callable[[str], Any],
                 render: Callable[[Any], str] = _observation_text,
                 reset_kwargs: Callable[[dict], dict] | None = None,
                 ) -> Callable[[], OpenEnvAdapter]:
    """A factory for load_environment: each episode wraps a fresh `make()` OpenEnv environment
    (or client) in an OpenEnvAdapter with these `action`, `render` and `reset_kwargs`."""
    return lambda: OpenEnvAdapter(make(), action, render, reset_kwargs)


class TrlAdapter(ToolEnvironment):
    """A ToolEnvironment over a TRL-style environment instance: its public methods (all but
    reset) are the tools, and its reset(**row) text is appended to the prompt's last message.
    The reward hook also gets `environment=` the instance, as TRL's reward functions get theirs."""

    def __init__(self, instance: Any, reward: Callable[..., float] | None = None,
                 tool_timeout: float | None = None) -> None:
        tools = [getattr(instance, name) for name, _ in inspect.getmembers(type(instance))
                 if not name.startswith("_") and name != "reset"
                 and callable(getattr(instance, name))]
        super().__init__(tools, reward=reward, tool_timeout=tool_timeout)
        self.instance = instance

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The row's prompt, with the instance's reset text (if any) added to its last message."""
        messages = super().reset(row)
        reset = getattr(self.instance, "reset", None)
        extra = reset(**_accepted(reset, row, self.prompt_column)) if callable(reset) else None
        if extra:
            messages[-1]["content"] = f"{messages[-1]['content']}\n\n{extra}"
            self.transcript = list(messages)
        return messages

    def _final_reward(self) -> float:
        """The reward hook, also given the environment instance."""
        if self.reward is None:
            return 0.0
        return float(self.reward(self.transcript, environment=self.instance, **self.row))


def _accepted(function: Callable, row: dict[str, Any], skip: str) -> dict[str, Any]:
    """The row's columns (but `skip`) that `function` takes: all of them with **kwargs, else only
    its named parameters (TRL's examples have both `reset(self)` and `reset(self, **kwargs)`)."""
    parameters = inspect.signature(function).parameters.values()
    columns = {k: v for k, v in row.items() if k != skip}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return columns
    return {k: v for k, v in columns.items() if k in {p.name for p in parameters}}


def from_trl(environment_class: Callable[[], Any], reward: Callable[..., float] | None = None,
             tool_timeout: float | None = None) -> Callable[[], TrlAdapter]:
    """A factory for load_environment from a TRL environment_factory class (or zero-argument
    callable): each episode wraps a fresh instance in a TrlAdapter."""
    return lambda: TrlAdapter(environment_class(), reward, tool_timeout)
