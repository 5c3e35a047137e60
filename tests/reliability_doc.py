"""The soaks' figures in docs/RELIABILITY.md: each soak owns one section between
``<!-- key:begin -->`` and ``<!-- key:end -->`` and rewrites only that section."""

from __future__ import annotations

from pathlib import Path

from bench.results import replace_section

RELIABILITY = Path(__file__).resolve().parent.parent / "docs" / "RELIABILITY.md"


def write_section(key: str, lines: list[str]) -> None:
    """Replace the section ``key`` of docs/RELIABILITY.md with ``lines``."""
    replace_section(RELIABILITY, key, lines, "# Reliability")
