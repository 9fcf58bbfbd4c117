"""Built-in tool environment `calculator`: the builtin:arithmetic problems (tasks/reasoning.py)
with a `calculate` tool. The policy may call it any number of turns, then answers; the answer is
graded by the math_answer verifier against the row's `answer` column (1.0 or 0.0).

Use it as `environment=builtin:calculator dataset=builtin:arithmetic`. The tool evaluates plain
arithmetic only (numbers, + - * /, parentheses, signs) by walking the expression's syntax tree,
never with eval, and refuses powers, so no call can run for long.
"""
from __future__ import annotations

import ast
import operator
from typing import Any

from rebel_rl.environments.tools import ToolEnvironment
from rebel_rl.rewards.verifiers import math_answer

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


def final_answer(messages: list[dict[str, Any]], answer: str, **columns: Any) -> float:
    """1.0 when the policy's last message states the row's `answer` (math_answer's grading)."""
    return math_answer([None], [messages[-1]["content"]], answer=[answer])[0]


def calculator_environment() -> ToolEnvironment:
    """One calculator episode: the `calculate` tool, graded by `final_answer`."""
    return ToolEnvironment([calculate], reward=final_answer, tool_timeout=5.0)
