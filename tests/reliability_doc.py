"""The soaks' figures in docs/RELIABILITY.md: each soak owns one section between
``<!-- key:begin -->`` and ``<!-- key:end -->`` and rewrites only that section."""

from __future__ import annotations

from pathlib import Path

RELIABILITY = Path(__file__).resolve().parent.parent / "docs" / "RELIABILITY.md"


def write_section(key: str, lines: list[str]) -> None:
    """Replace the section ``key`` of docs/RELIABILITY.md with ``lines`` (append it when the
    file has none yet)."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    section = "\n".join([begin, *lines, end])
    text = RELIABILITY.read_text() if RELIABILITY.exists() else "# Reliability\n"
    if begin in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RELIABILITY.write_text(text)
