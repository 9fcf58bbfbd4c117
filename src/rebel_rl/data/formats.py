"""Small helpers for the TRL data formats that need no dataset library (prompts.py holds the
rest)."""
from __future__ import annotations


def completion_text(completion: str | list[dict]) -> str:
    """Return the text of a completion given as a string or as a list of messages (TRL format)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)
