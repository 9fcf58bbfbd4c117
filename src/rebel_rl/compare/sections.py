"""Sections of results.md: each `rebel compare` invocation writes only its own section, between
`<!-- compare:NAME -->` and `<!-- /compare:NAME -->`, and keeps every other one as it is.

A file without any marker was written whole by the main grid (before sections existed): it is kept
as the `main` section. A new section goes after the existing ones.
"""
from __future__ import annotations

import os
import re
from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    return f"<!-- compare:{name} -->", f"<!-- /compare:{name} -->"


def write_section(path: Path, name: str, lines: list[str]) -> Path:
    """Write `lines` as section `name` of the markdown file `path` (created if missing),
    atomically."""
    start, end = markers(name)
    block = "\n".join([start, *lines, end])
    text = path.read_text() if path.is_file() else ""
    if text.strip() and "<!-- compare:" not in text:
        main_start, main_end = markers("main")
        text = f"{main_start}\n{text.rstrip()}\n{main_end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + block + "\n"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def read_section(path: Path, name: str) -> str | None:
    """The text between section `name`'s markers, or None if the file or the section is missing."""
    if not path.is_file():
        return None
    start, end = markers(name)
    match = re.search(re.escape(start) + r"\n?(.*?)\n?" + re.escape(end), path.read_text(), re.S)
    return match.group(1) if match else None
