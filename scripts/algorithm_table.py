"""Regenerate the README's table of algorithms from the algorithm registry.

    .venv/bin/python scripts/algorithm_table.py          # rewrite README.md's table in place

One row per registered algorithm, in registration order: its `--algorithm` name (the config's
default marked, the policy kinds named when it trains no causal LM), its entry's `summary`, and
the fields of its option group. tests/test_algorithm_registry.py fails when the README differs.
"""
from __future__ import annotations

import dataclasses
import re
import sys
from pathlib import Path

from rebel_rl.config import RebelConfig
from rebel_rl.config.algorithms import algorithm_names, algorithm_spec

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- algorithms:start -->", "<!-- algorithms:end -->"
HEADER = ("| `--algorithm` | loss on one iteration's batch (r = score − kl_coef·KL − EOS penalty) "
          "| its own options |\n|---|---|---|")


def algorithm_row(name: str, default: str) -> str:
    """The table row of the registered algorithm `name` (`default`: the config's algorithm)."""
    spec = algorithm_spec(name)
    cell = f"`{name}`"
    if name == default:
        cell += " (default)"
    if "causal_lm" not in spec.policy_kinds:
        cell += f" (for {' or '.join(spec.policy_kinds)})"
    fields = dataclasses.fields(spec.options) if spec.options is not None else ()
    options = ", ".join(f"`{f.name}`" for f in fields) or "—"
    return f"| {cell} | {spec.summary.replace('|', chr(92) + '|')} | {options} |"


def algorithm_table() -> str:
    """The markdown table of every registered algorithm."""
    default = RebelConfig().algorithm
    return "\n".join([HEADER, *(algorithm_row(name, default) for name in algorithm_names())])


def render(readme: str) -> str:
    """`readme` with the text between the algorithm markers replaced by the current table."""
    block = f"{START}\n{algorithm_table()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    README.write_text(render(README.read_text()))
    sys.exit(0)
