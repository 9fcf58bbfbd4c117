"""Built-in tool environment `calculator`: the builtin:arithmetic problems (tasks/reasoning.py)
with a `calculate` tool. The policy may call it any number of turns, then answers; the answer
(tagged, boxed, else the last number) must equal the row's `answer` as a number (1.0 or 0.0).
Not math_answer: math-verify times its parsing with signal.alarm, which fails outside the main
thread, and a step under step_timeout runs in a thread (environments/guarded.py).

Use it as `environment=builtin:calculator dataset=builtin:arithmetic`. The tool evaluates plain
arithmetic only (numbers, + - * /, parentheses, signs) by walking the expression's syntax tree,
never with eval, and refuses powers, so no call can run for long.
"""
from __future__ import annotations

import ast
import operator
from fractions import Fraction
from typing import Any

from rebel_rl.environments.tools import ToolEnvironment
from rebel_rl.rewards.verifiers import extract_answer, last_number, normalize

MAX_LENGTH = 200  # characters in an expression
OPERATORS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
             ast.Div: operator.truediv, ast.USub: operator.neg, ast.UAdd: operator.pos}


def _value(node: ast.AST) -> float:
    """The value of an arithmetic syntax tree; ValueError for anything else."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_value(node.left), _value(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in OPERATORS:
        return OPERATORS[type(node.op)](_value(node.operand))
    raise ValueError(f"only numbers, + - * / and parentheses are allowed, not "
                     f"{ast.unparse(node)!r}")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression with numbers, + - * / and parentheses.

    Args:
        expression: the expression to evaluate, for example "(3 + 4) * -2"
    """
    if len(expression) > MAX_LENGTH:
        raise ValueError(f"the expression is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError:
        raise ValueError(f"cannot read {expression!r} as arithmetic") from None
    value = _value(tree.body)
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


def _number(text: str) -> Fraction | None:
    """`text` as an exact number ("3", "-2.5", "7/2"), or None."""
    try:
        return Fraction(text.replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None


def final_answer(messages: list[dict[str, Any]], answer: str, **columns: Any) -> float:
    """1.0 when the policy's last message states the row's `answer`: its tagged or boxed answer,
    else its last number, equal to it as text or as an exact number."""
    text = messages[-1]["content"]
    given = extract_answer(text) or last_number(text)
    if given is None:
        return 0.0
    if normalize(given) == normalize(str(answer)):
        return 1.0
    value = _number(given)
    return float(value is not None and value == _number(str(answer)))


def calculator_environment() -> ToolEnvironment:
    """One calculator episode: the `calculate` tool, graded by `final_answer`."""
    return ToolEnvironment([calculate], reward=final_answer, tool_timeout=5.0)
