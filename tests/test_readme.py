"""The README's commands run as written: every ```sh block after the first two (the install
command and the test command, which CI itself runs), and the ```python block.

They run as a new user would run them: from the repository's folder layout (a temporary folder
with the project's .venv in it), on the embedded PostgreSQL (no DATABASE_URL), with its data in
a temporary folder. A command may exit non-zero only where the README says so on its line
("# exit N: ..."). The first command's generate (its install part is what CI did) runs first,
since later blocks read its dataset.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from heimdall_synth.service.storage.database import EmbeddedPostgres

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.M | re.S)
EXPECTED_EXIT = re.compile(r"#\s*exit (\d+)\b")


def blocks(kind: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == kind]


def commands(block: str) -> list[str]:
    """The block's command lines (a trailing backslash joins lines)."""
    return [line for line in block.replace("\\\n", " ").splitlines() if line.strip()]


def script(blocks_: list[str]) -> str:
    """One bash script running every command, each followed by a marker with its exit code."""
    lines = []
    for n, line in enumerate(c for b in blocks_ for c in commands(b)):
        lines += [line, f'echo "__rc__ {n} $?"']
    return "\n".join(lines) + "\n"


@pytest.fixture
def user_folder(tmp_path):
    """A folder laid out like the repository for the commands (its .venv), the embedded
    server's data folder, and that server kept running for the test (each command joins it
    instead of starting and stopping its own)."""
    venv = ROOT / ".venv"
    if not (venv / "bin" / "heimdall-synth").exists():
        pytest.fail(f"{venv} has no heimdall-synth: run the README's first command first")
    work = tmp_path / "work"
    work.mkdir()
    (work / ".venv").symlink_to(venv)
    data = tmp_path / "pgdata"
    server = EmbeddedPostgres(data).start()
    try:
        yield work, data
    finally:
        server.stop()


def test_the_readme_shows_the_two_first_commands():
    first, tests = blocks("sh")[:2]
    assert first.strip().startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    assert "heimdall-synth generate" in first
    assert tests.strip() == ".venv/bin/pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert ci.rstrip().splitlines()[-1] == ".venv/bin/pytest"


def test_every_readme_command_runs_as_written(user_folder):
    work, data = user_folder
    with socket.socket() as probe:  # the HTTP session uses the default port
        if probe.connect_ex(("127.0.0.1", 8000)) == 0:
            pytest.fail("port 8000 is in use: the README's HTTP session needs it")
    sh = blocks("sh")
    main_generate = sh[0].split("&&")[-1].strip()
    run = [main_generate] + sh[2:]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VIRTUAL_ENV")}
    env["HEIMDALL_SYNTH_DATA_DIR"] = str(data)
    proc = subprocess.run(["bash", "-c", script(run)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [c for b in run for c in commands(b)]
    codes = dict(re.findall(r"^__rc__ (\d+) (\d+)$", proc.stdout, re.M))
    for n, line in enumerate(lines):
        expected = EXPECTED_EXIT.search(line)
        want = int(expected.group(1)) if expected else 0
        assert str(n) in codes, (line, proc.stdout[-3000:], proc.stderr[-3000:])
        assert int(codes[str(n)]) == want, (line, proc.stdout[-3000:], proc.stderr[-3000:])
    # what the README says they print
    out = proc.stdout
    assert "15 / 15 (continued from 5) completed target_reached" in out
    assert "test-expansion-base 15 15" in out
    log = (work / "serve.log").read_text()
    assert "Expanding dataset" in log and "Batch 1 complete: 10 valid samples" in log
    assert "stopped_reason: stalled" in out and "lower min_receivers" in out
    assert "cancel recorded for job" in out
    assert sorted(p.name for p in (work / "demo-report").iterdir()) == sorted(
        ["map.png", "splits.png", "snr.png", "gdop.png", "crb.png", "detected.png",
         "distance_power.png", "rejections.png",
         "baseline_errors.png", "baseline_error_map.png"])  # the README's baseline run's
    assert (work / "demo-baseline.png").stat().st_size > 0
    assert "median error:" in out and "centre's median:" in out
    assert (work / "demo.parquet").stat().st_size > 0


def test_the_readme_python_runs(user_folder):
    work, _ = user_folder
    (code,) = blocks("python")
    proc = subprocess.run([sys.executable, "-c", code], cwd=work, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "'tx_off'" in proc.stdout
