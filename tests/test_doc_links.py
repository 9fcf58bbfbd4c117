"""Every relative link in README.md and docs/**/*.md points to a file that exists, and the README
stays a front page (at most 250 lines).

Anchors (`page.md#section`) are stripped before the check: only the file part is tested. Links inside
code (fenced blocks and `inline code`) are not links and are skipped.
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE = re.compile(r"^```.*?^```|`[^`\n]*`", re.S | re.M)


def relative_links(page: Path) -> list[str]:
    """The link targets of a markdown page that are neither URLs, mail addresses nor bare anchors."""
    text = CODE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z][a-z0-9+.-]*:|#", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_to_existing_files(page):
    broken = [t for t in relative_links(page) if not (page.parent / t.split("#")[0]).exists()]
    assert broken == [], f"{page.relative_to(ROOT)} links to missing files: {broken}"


def test_the_checker_sees_links():
    # The pattern must find the README's links, or the test above passes on nothing.
    assert {"docs/setup.md", "docs/configuration.md", "docs/study.md"} <= set(
        relative_links(ROOT / "README.md"))


def test_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; move detail into docs/"
