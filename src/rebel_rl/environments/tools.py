"""Tool use as a ready environment: the policy calls Python functions in Hermes/Qwen-style
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks; each call runs (with a time-out)
and its result comes back as a {"role": "tool"} message; the episode ends when the policy answers
without a tool call, and a final reward hook scores the transcript against the row's columns.

Schemas come from each function's signature and docstring (transformers' get_json_schema).
`render` passes them to the tokenizer's chat template as `tools=` where the template uses them;
where it does not (SmolLM2's template ignores `tools`), it describes the tools in the system
message instead, in the same `<tool_call>` format the parser reads (docs/multiturn.md).
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rebel_rl.environments.guarded import StepTimeout, call_with_timeout
from rebel_rl.errors import ConfigError, EpisodeError, first_line

TOOL_CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|$)", re.DOTALL)
FALLBACK_PROMPT = (
    "You may call these tools. To call one, write <tool_call>{{\"name\": NAME, \"arguments\": "
    "{{...}}}}</tool_call> and wait for its result; answer without a tool call when you are done."
    "\nTools:\n{schemas}"
)


@dataclass(frozen=True)
class ToolCall:
    """One parsed call: a name and its arguments, or `error` saying why the block is malformed."""

    name: str | None = None
    arguments: dict[str, Any] | None = None
    error: str | None = None


def tool_schema(function: Callable) -> dict[str, Any]:
    """The JSON schema of `function` from its type hints and Google-style docstring (transformers'
    get_json_schema); one ConfigError line naming the tool when they cannot describe it."""
    from transformers.utils import get_json_schema

    try:
        return get_json_schema(function)
    except Exception as exc:  # DocstringParsingException, TypeHintParsingException
        name = getattr(function, "__name__", repr(function))
        raise ConfigError(f"tool '{name}' has no JSON schema: {first_line(exc)} (give it type "
                          "hints and a docstring with an Args: section)") from None


def parse_tool_calls(text: str) -> list[ToolCall]:
    """Every `<tool_call>` block in `text` (an unclosed last one too: generation may stop at the
    token budget), each parsed as JSON {"name": str, "arguments": object or JSON string}."""
    calls = []
    for body in TOOL_CALL.findall(text):
        try:
            data = json.loads(body.strip())
        except json.JSONDecodeError as exc:
            calls.append(ToolCall(error=f"invalid tool call JSON ({exc.msg}): write "
                                        '{"name": ..., "arguments": {...}}'))
            continue
        arguments = data.get("arguments", {}) if isinstance(data, dict) else None
        if isinstance(arguments, str):  # OpenAI-style: the arguments as a JSON string
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError:
                arguments = None
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(
                arguments, dict):
            calls.append(ToolCall(error='invalid tool call: it needs a string "name" and an '
                                        'object "arguments"'))
            continue
        calls.append(ToolCall(data["name"], arguments))
    return calls


def template_supports_tools(tokenizer: Any) -> bool:
    """Whether the tokenizer's chat template reads a `tools` variable (else tools= is ignored)."""
    template = getattr(tokenizer, "chat_template", None) or ""
    if isinstance(template, dict):  # several named templates
        template = " ".join(template.values())
    return re.search(r"\btools\b", template) is not None


class ToolEnvironment:
    """An episode in which the policy may call `tools` (plain Python functions) before answering.

    reset(row): the row's `prompt` (text or messages), after `system` if given. step(text): run
    each tool call in `text` (at most `tool_timeout` seconds each) and return their results as tool
    messages, reward 0, not done; with no call, the episode ends with reward
    `reward(transcript, **row)` (0 without a reward). Malformed calls, unknown tools, a tool that
    raises or hangs: an error tool message, never a crash, so the policy can learn from it.
    """

    def __init__(self, tools: list[Callable], reward: Callable[..., float] | None = None,
                 system: str | None = None, tool_timeout: float | None = None,
                 prompt_column: str = "prompt") -> None:
        """Describe the tools now (one ConfigError line for a tool without a schema)."""
        self.tools = {getattr(t, "__name__", repr(t)): t for t in tools}
        self.schemas = [tool_schema(t) for t in tools]
        self.reward, self.system, self.tool_timeout = reward, system, tool_timeout
        self.prompt_column = prompt_column
        self.row: dict[str, Any] = {}
        self.transcript: list[dict[str, Any]] = []

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        """The opening messages: `system` (if any), then the row's prompt."""
        self.row = dict(row)
        prompt = row.get(self.prompt_column)
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list):
            messages = [dict(m) for m in prompt]
        else:
            raise EpisodeError(f"tool environment: the row has no '{self.prompt_column}' "
                                   "column of text or messages")
        if self.system is not None:
            messages.insert(0, {"role": "system", "content": self.system})
        self.transcript = list(messages)
        return messages

    def step(self, assistant_message: str) -> tuple[list[dict[str, Any]], float, bool]:
        """Tool results for the calls in `assistant_message`, or the final reward if it has none."""
        self.transcript.append({"role": "assistant", "content": assistant_message})
        calls = parse_tool_calls(assistant_message)
        if not calls:
            return [], self._final_reward(), True
        results = [{"role": "tool", "name": call.name or "invalid", "content": self._run(call)}
                   for call in calls]
        self.transcript.extend(results)
        return results, 0.0, False

    def _run(self, call: ToolCall) -> str:
        """One call's result as text; errors become text for the policy to read."""
        if call.error is not None:
            return f"error: {call.error}"
        if call.name not in self.tools:
            return f"error: unknown tool '{call.name}'; the tools are {', '.join(self.tools)}"
        function = self.tools[call.name]
        try:
            result = call_with_timeout(lambda: function(**call.arguments), (), self.tool_timeout)
        except StepTimeout as exc:
            return f"error: tool '{call.name}' {exc}"
        except Exception as exc:
            return f"error: tool '{call.name}' raised {type(exc).__name__}: {first_line(exc)}"
        return result if isinstance(result, str) else json.dumps(result, default=str)

    def _final_reward(self) -> float:
        """The reward hook over the transcript and the row's columns (0.0 without a hook)."""
        if self.reward is None:
            return 0.0
        return float(self.reward(self.transcript, **self.row))

    def render(self, tokenizer: Any, messages: list[dict[str, Any]],
               add_generation_prompt: bool = True) -> str:
        """`messages` as prompt text with the tools shown: through the template's `tools=` where
        it reads them, otherwise described in the system message (see FALLBACK_PROMPT)."""
        if template_supports_tools(tokenizer):
            return tokenizer.apply_chat_template(messages, tools=self.schemas, tokenize=False,
                                                 add_generation_prompt=add_generation_prompt)
        described = FALLBACK_PROMPT.format(
            schemas="\n".join(json.dumps(s["function"]) for s in self.schemas))
        messages = [dict(m) for m in messages]
        if messages and messages[0]["role"] == "system":
            messages[0]["content"] = messages[0]["content"] + "\n\n" + described
        else:
            messages.insert(0, {"role": "system", "content": described})
        return tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
