"""Exceptions for bad user input: each carries one line that names the problem and the fix."""


class RebelError(Exception):
    """Base class: a problem with what the user gave us (config, data, reward, model, run dir)."""


class ConfigError(RebelError):
    """A config file, key or value is missing or invalid."""


class DataError(RebelError):
    """A dataset cannot be read, or lacks a needed column, or a prompt is malformed or too long."""


class RewardError(RebelError):
    """A reward cannot be loaded, raised, or returned the wrong number of values or a non-finite
    one."""


class ModelError(RebelError):
    """A model or tokenizer cannot be found or loaded."""


class RunDirError(RebelError):
    """An output directory already holds a run, or a run to resume is missing or incomplete."""


class HubError(RebelError):
    """A run cannot be pushed to the Hugging Face Hub (no hub_model_id, no network, no
    permission)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name if it has none): for one-line
    errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class EpisodeError(RebelError):
    """A multi-turn environment cannot be loaded, lacks reset/step, raised, timed out, or returned
    the wrong shape (docs/multiturn.md)."""
