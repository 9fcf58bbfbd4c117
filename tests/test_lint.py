"""ruff (configured in pyproject.toml: 100-character lines) over src/. Files still being shortened
by other work are listed in PENDING and reported, not failed; the list only shrinks."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Paths (files or folders, relative to src/rebel_rl) whose long lines are not fixed yet.
PENDING: list[str] = []


def ruff_command() -> list[str] | None:
    """How to run ruff here: the module of the current interpreter, else a `ruff` on PATH."""
    try:
        from ruff.__main__ import find_ruff_bin

        return [find_ruff_bin()]
    except (ImportError, FileNotFoundError):
        found = shutil.which("ruff")
        return [found] if found else None


def checked_files() -> list[Path]:
    """Every Python file under src/ outside PENDING."""
    package = ROOT / "src" / "rebel_rl"
    pending = [package / path for path in PENDING]
    return [path for path in sorted(package.rglob("*.py"))
            if not any(path == p or p in path.parents for p in pending)]


def test_pending_paths_exist():
    package = ROOT / "src" / "rebel_rl"
    assert [path for path in PENDING if not (package / path).exists()] == []


def test_src_passes_ruff():
    command = ruff_command()
    if command is None:
        pytest.skip("ruff is not installed: pip install -e '.[dev]' installs it")
    files = checked_files()
    assert len(files) > 50  # the walk found the package
    result = subprocess.run([*command, "check", "--output-format", "concise",
                             *map(str, files)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    if not PENDING:  # ruff with no paths would check the whole repository
        return
    pending = subprocess.run([*command, "check", "--output-format", "concise", "--exit-zero",
                              *(str(ROOT / "src" / "rebel_rl" / p) for p in PENDING)],
                             cwd=ROOT, capture_output=True, text=True)
    print(f"pending (not failed): {pending.stdout.count(': E')} findings", file=sys.stderr)
