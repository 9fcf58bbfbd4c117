"""ToolEnvironment: schemas from signatures and docstrings, tool-call parsing (good, malformed,
unknown, hanging), tool messages, the final reward hook, and rendering with and without a template
that reads `tools`."""
from __future__ import annotations

import json
import time

import pytest
from tiny import tiny_tokenizer

from rebel_rl.environments import (
    EnvironmentFactory,
    ToolCall,
    ToolEnvironment,
    parse_tool_calls,
    template_supports_tools,
    tool_schema,
)
from rebel_rl.errors import ConfigError


def multiply(a: int, b: int) -> int:
    """Multiply two whole numbers.

    Args:
        a: the first factor
        b: the second factor
    """
    return a * b


def stall(seconds: float) -> str:
    """Wait, then say so.

    Args:
        seconds: how long to wait
    """
    time.sleep(seconds)
    return "waited"


def undocumented(x):
    return x


def call(name: str, **arguments) -> str:
    return f"<tool_call>{json.dumps({'name': name, 'arguments': arguments})}</tool_call>"


def answer_reward(messages, answer, **columns):
    return float(messages[-1]["content"].strip().endswith(str(answer)))


def test_schema_from_signature_and_docstring():
    schema = tool_schema(multiply)["function"]
    assert schema["name"] == "multiply" and schema["description"] == "Multiply two whole numbers."
    assert schema["parameters"]["properties"]["a"] == {"type": "integer",
                                                       "description": "the first factor"}
    assert schema["parameters"]["required"] == ["a", "b"]
    with pytest.raises(ConfigError, match="^tool 'undocumented' has no JSON schema: .*docstring"):
        tool_schema(undocumented)


def test_parse_good_openai_style_unclosed_and_malformed_calls():
    text = (call("multiply", a=2, b=3) + " and "
            '<tool_call>{"name": "multiply", "arguments": "{\\"a\\": 1, \\"b\\": 4}"}</tool_call>'
            '<tool_call>{"name": "multiply", "arguments": {"a": 5')
    good, openai, cut = parse_tool_calls(text)
    assert good == ToolCall("multiply", {"a": 2, "b": 3})
    assert openai == ToolCall("multiply", {"a": 1, "b": 4})
    assert cut.error.startswith("invalid tool call JSON")
    (no_name,) = parse_tool_calls('<tool_call>{"arguments": {}}</tool_call>')
    assert no_name.error == 'invalid tool call: it needs a string "name" and an object "arguments"'
    assert parse_tool_calls("the answer is 6") == []


def test_episode_runs_tools_then_ends_with_the_reward():
    env = ToolEnvironment([multiply], reward=answer_reward, system="Use tools.")
    row = {"prompt": "What is 6 times 7?", "answer": 42}
    assert env.reset(row) == [{"role": "system", "content": "Use tools."},
                              {"role": "user", "content": "What is 6 times 7?"}]
    assert env.step(call("multiply", a=6, b=7)) == (
        [{"role": "tool", "name": "multiply", "content": "42"}], 0.0, False)
    assert env.step("It is 42") == ([], 1.0, True)
    assert [m["role"] for m in env.transcript] == ["system", "user", "assistant", "tool",
                                                   "assistant"]
    env.reset(row)
    assert env.step("It is 41") == ([], 0.0, True)


def test_bad_calls_become_error_tool_messages_not_crashes():
    env = ToolEnvironment([multiply, stall], tool_timeout=0.3)
    env.reset({"prompt": [{"role": "user", "content": "go"}]})
    start = time.monotonic()
    messages, reward, done = env.step(
        call("divide", a=1) + call("multiply", a=1) + "<tool_call>not json</tool_call>"
        + call("stall", seconds=20))
    assert time.monotonic() - start < 2.0 and (reward, done) == (0.0, False)
    contents = [m["content"] for m in messages]
    assert contents[0] == "error: unknown tool 'divide'; the tools are multiply, stall"
    assert contents[1].startswith("error: tool 'multiply' raised TypeError:")
    assert contents[2].startswith("error: invalid tool call JSON")
    assert contents[3] == "error: tool 'stall' timed out after 0.3 s"
    assert [m["name"] for m in messages] == ["divide", "multiply", "invalid", "stall"]


def test_guarded_tool_environment_checks_its_messages():
    factory = EnvironmentFactory(lambda: ToolEnvironment([multiply]))
    episode = factory()
    episode.reset({"prompt": "hi"})
    assert episode.step(call("multiply", a=3, b=3))[0][0]["content"] == "9"


def test_render_with_a_template_that_reads_tools():
    tokenizer = tiny_tokenizer()
    tokenizer.chat_template = ("{% for t in tools %}[tool {{ t['function']['name'] }}]{% endfor %}"
                               + tokenizer.chat_template)
    assert template_supports_tools(tokenizer)
    text = ToolEnvironment([multiply]).render(tokenizer, [{"role": "user", "content": "hi"}])
    assert text.startswith("[tool multiply]<|im_start|>user\nhi<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n")


def test_render_falls_back_to_the_system_message_without_tool_support():
    tokenizer = tiny_tokenizer()  # its template, like SmolLM2's, ignores `tools`
    assert not template_supports_tools(tokenizer)
    env = ToolEnvironment([multiply])
    text = env.render(tokenizer, [{"role": "system", "content": "Be brief."},
                                  {"role": "user", "content": "hi"}])
    assert text.startswith("<|im_start|>system\nBe brief.\n\nYou may call these tools.")
    assert '"name": "multiply"' in text and text.count("<|im_start|>system") == 1
    alone = env.render(tokenizer, [{"role": "user", "content": "hi"}])
    assert alone.startswith("<|im_start|>system\nYou may call these tools.")


def test_guarded_render_uses_the_environment_render_or_the_plain_template():
    tokenizer, user = tiny_tokenizer(), [{"role": "user", "content": "hi"}]
    tools = EnvironmentFactory(lambda: ToolEnvironment([multiply]))()
    assert "You may call these tools." in tools.render(tokenizer, user)
    plain = EnvironmentFactory("builtin:guess_number")()
    expected = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert plain.render(tokenizer, user) == expected


def test_calculator_tool_and_its_episode():
    from rebel_rl.tasks.calculator import calculate

    assert calculate("(3 + 4) * -2") == "-14" and calculate("7 / 2") == "3.5"
    for bad, words in [("2 ** 99", r"not '2 \*\* 99'"), ("__import__('os')", "only numbers"),
                       ("3 +", "cannot read")]:
        with pytest.raises(ValueError, match=words):
            calculate(bad)
    episode = EnvironmentFactory("builtin:calculator", step_timeout=5.0)()  # steps in a thread
    episode.reset({"prompt": [{"role": "user", "content": "What is 6 * 7?"}], "answer": "42"})
    (result,), reward, done = episode.step(call("calculate", expression="6 * 7"))
    assert result["content"] == "42" and (reward, done) == (0.0, False)
    (error,), _, _ = episode.step(call("calculate", expression="1 / 0"))
    assert error["content"] == "error: tool 'calculate' raised ZeroDivisionError: division by zero"
    assert episode.step("<answer>42</answer>") == ([], 1.0, True)
    episode.reset({"prompt": "What is 6 * 7?", "answer": "42"})
    assert episode.step("<answer>41</answer>") == ([], 0.0, True)
    episode.reset({"prompt": "What is 7 / 2?", "answer": "3.5"})
    assert episode.step("It is 7/2.") == ([], 1.0, True)  # the last number, compared exactly
