"""The environment contract of a multi-turn episode, as the policy sees it (docs/multiturn.md).

An environment is any object with these two methods; one instance plays one episode. It lives in the
policy layer because the policy's multi-turn rollout calls it; environments/ holds the loaders, the
time-outs, the tools and the built-in environments, all of which satisfy this protocol.

    reset(row) -> messages                  # the first messages of the dialogue (chat format)
    step(assistant_message) -> (messages, reward, done)

`row` is the prompt row (its columns: `prompt` and e.g. the hidden answer) as a dict. The messages
`reset` returns open the dialogue (usually the row's prompt, perhaps after a system message or with
an observation); an empty list means "the row's prompt as it is". `step`'s messages are chat
messages ({"role": "user" | "tool" | "system", "content": str}) appended after the policy's turn;
`reward` is this step's reward (the episode's return is their sum); `done` ends the episode.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Message = dict[str, Any]


@runtime_checkable
class Environment(Protocol):
    """One episode of a multi-turn task: `reset` once, then `step` after every policy turn."""

    def reset(self, row: dict[str, Any]) -> list[Message]:
        """The dialogue's opening messages for this prompt row."""

    def step(self, assistant_message: str) -> tuple[list[Message], float, bool]:
        """React to the policy's turn: the messages to append, this step's reward, whether it is
        over."""
