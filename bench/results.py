"""What every benchmark script shares: the machine line and bench/RESULTS.md sections."""

from __future__ import annotations

import datetime as dt
import os
import platform
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")


def machine() -> str:
    """CPU model and core count, Python and the numeric stack."""
    import numba
    import numpy as np

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"numba {numba.__version__}, numpy {np.__version__}")


def replace_section(path: Path, key: str, lines: list[str], heading: str) -> None:
    """Replace the lines between ``<!-- key:begin -->`` and ``<!-- key:end -->`` of the
    Markdown file ``path`` (append the section when it has none; a new file starts with
    ``heading``). Each script owns its sections and never touches the rest of the file."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    section = "\n".join([begin, *lines, end])
    text = path.read_text() if path.exists() else heading + "\n"
    if begin in text:
        text = text[:text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def record(key: str, title: str, lines: list[str]) -> None:
    """Replace (or append) the section ``key`` of bench/RESULTS.md, dated."""
    replace_section(RESULTS, key, [f"## {title}", "", f"Measured {dt.date.today().isoformat()}.",
                                   "", *lines], "# Benchmark results")
    print(f"recorded in {RESULTS}")


@contextmanager
def bench_database(prefix: str):
    """The URL of the database a benchmark uses: $DATABASE_URL, else a fresh embedded
    PostgreSQL in a temporary folder, stopped and removed on leaving."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    from heimdall_synth.service.storage.database import EmbeddedPostgres
    tmp = tempfile.mkdtemp(prefix=prefix)
    server = EmbeddedPostgres(Path(tmp) / "pgdata").start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
