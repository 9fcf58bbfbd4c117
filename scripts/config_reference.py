"""Regenerate the configuration table in docs/configuration.md from RebelConfig.

    .venv/bin/python scripts/config_reference.py          # rewrite docs/configuration.md in place
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

from rebel_rl.cli import field_help
from rebel_rl.config import RebelConfig

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
START, END = "<!-- config-reference:start -->", "<!-- config-reference:end -->"


def config_table() -> str:
    """The markdown table of every RebelConfig field; a name several groups share (`clip_range`)
    has one row per group, as `group.name`."""
    helps, defaults = field_help(), RebelConfig()
    rows = ["| field | default | meaning |", "|---|---|---|"]
    for name, _, owner in RebelConfig.option_fields():
        flag = RebelConfig.flag(name, owner)
        group = flag.partition(".")[0] if "." in flag else RebelConfig.owners(name)[0]
        default = getattr(getattr(defaults, group), name)
        meaning = helps.get(flag, "").replace("|", chr(92) + "|")
        rows.append(f"| `{flag}` | `{default!r}` | {meaning} |")
    return "\n".join(rows)


def render(readme: str) -> str:
    block = f"{START}\n{config_table()}\n{END}"
    return re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, readme, flags=re.S)


if __name__ == "__main__":
    REFERENCE.write_text(render(REFERENCE.read_text()))
    sys.exit(0)
