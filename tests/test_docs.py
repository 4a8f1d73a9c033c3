"""The documentation a newcomer reads: a short README whose links, like those of docs/*.md, all lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
"""A Markdown link or image target: [text](target), ![alt](target)."""


def relative_links(page: Path) -> list[str]:
    """Link targets of ``page`` that are files of this repository (no web addresses, no in-page anchors)."""
    targets = [t.split("#")[0] for t in LINK.findall(page.read_text())]
    return [t for t in targets if t and not re.match(r"[a-z]+:", t)]


def test_the_readme_is_at_most_300_lines() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file(page: Path) -> None:
    missing = [t for t in relative_links(page) if not (page.parent / t).exists()]
    assert not missing, f"{page.name} links to missing files: {missing}"


def test_the_link_check_sees_links_and_images() -> None:
    assert "docs/usage.md" in relative_links(ROOT / "README.md")
    assert "learning_curves.png" in relative_links(ROOT / "docs" / "results.md")
