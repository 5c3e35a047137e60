"""bench/soak.py's rendering, fed hand-made figures: the soaks publish JSON
(tests/helpers.publish_soak_figures), and ``--record`` rewrites each soak's section of
docs/RELIABILITY.md, here in a temporary copy, leaving every other byte as it was. The soaks
themselves take many minutes and do not run here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from bench import soak
from tests.helpers import ROOT, SOAK_RESULTS_ENV, publish_soak_figures

LATENCY = {"n": 10, "p50": 1.5, "p99": 9.3, "max": 12.0}
SAMPLES = {
    "sigkill": {"samples": 123_456, "kills": 7, "mid_copy": 3, "checks": 7, "rows": 123_456,
                "checksum": "0123456789abcdef0123456789abcdef", "seconds": 98.7},
    "fuzz": {"seconds": 12.3, "schemathesis": "9.9.9", "total": 1_234,
             "by_mode": {"coverage": 34, "positive": 600, "negative": 600},
             "status": {"200": 100, "202": 11, "404": 1_000, "422": 123},
             "refused": [[404, "not_found", 1_000], [422, "invalid_field", 123]],
             "server_errors": 0, "refused_changed_db": 0, "safe_changed_db": 0,
             "refusals_checked": 1_123,
             "per_op": {"GET /api/health": 34, "POST /api/training/synthetic/generate": 1_200}},
    "load": {"jobs": 3, "datasets": 2, "same_dataset": 2, "pollers": 5, "streamers": 4,
             "workers": 2, "held_jobs": 3, "running_jobs": 2, "backends": 9,
             "max_open_streams": 4, "streams": 8, "requests": 4_321, "server_errors": 0,
             "transport_errors": 0,
             "latency": {k: LATENCY for k in ("status", "dataset", "datasets", "stream")},
             "idle": {k: LATENCY for k in ("status", "dataset", "datasets")},
             "rows_verified": 77_777, "load_samples": 70_000, "load_s": 3.5,
             "samples_per_s": 20_000.0, "poll_every_s": 0.5, "max_event_streams": 48},
}
#: What each rendered section must now say (from the sample, not from the run in the document).
SAYS = {"sigkill": ["A 123,456-sample job killed with SIGKILL **7 times**", "`0123456789abcdef",
                    "Wall time with the kills, restarts and resumes: 99 s."],
        "fuzz": ["**1,234 generated requests**", "111 accepted (2xx), **1,123 refused (4xx)**: "
                 "404: 1,000, 422: 123.", "schemathesis 9.9.9", "| `GET /api/health` | 34 |"],
        "load": ["**3 jobs started at once** on 2 datasets", "**9 clients**: 5 polling (every "
                 "0.5 s)", "**4,321 requests, zero 5xx", "| 10 | 1.5 | 9.3 | 12.0 | 1.5 |"]}


def split(text: str, key: str) -> tuple[str, str, str]:
    """(before, the section's lines, after) of ``text`` around the section ``key``."""
    match = re.search(rf"(?s)(.*<!-- {key}:begin -->\n)(.*)(\n<!-- {key}:end -->.*)", text)
    assert match, f"no section {key}"
    return match.groups()


@pytest.fixture
def doc(tmp_path):
    """A copy of docs/RELIABILITY.md, with the three sections the soaks own."""
    copy = tmp_path / "RELIABILITY.md"
    shutil.copy(ROOT / "docs" / "RELIABILITY.md", copy)
    return copy


@pytest.mark.parametrize("key", list(SAMPLES))
def test_a_soaks_figures_rewrite_its_section_and_nothing_else(key, doc, tmp_path, monkeypatch):
    original = doc.read_text()
    results = tmp_path / "results"
    monkeypatch.setenv(SOAK_RESULTS_ENV, str(results))
    written = publish_soak_figures(key, SAMPLES[key])   # what the soak test does
    assert written == results / f"{key}.json"
    assert json.loads(written.read_text())["figures"] == SAMPLES[key]

    assert soak.main(["--render-only", str(results), "--only", key, "--record",
                      "--doc", str(doc)]) == 0
    text = doc.read_text()
    before, section, after = split(original, key)
    new_before, new_section, new_after = split(text, key)
    assert (new_before, new_after) == (before, after)   # every other byte as it was
    assert new_section != section
    for phrase in SAYS[key]:
        assert phrase in new_section, (phrase, new_section)
    # the heading stays, and the findings that close the fuzz and load sections
    assert new_section.splitlines()[0] == section.splitlines()[0]
    if key != "sigkill":
        assert section.splitlines()[-1] == new_section.splitlines()[-1]


def test_without_record_nothing_is_written_and_missing_figures_leave_the_section(
        doc, tmp_path, capsys):
    original = doc.read_text()
    results = tmp_path / "results"
    results.mkdir()
    (results / "sigkill.json").write_text(json.dumps(
        {"soak": "sigkill", "date": "2000-01-02", "cores": 3, "machine": "a test",
         "figures": SAMPLES["sigkill"]}))
    assert soak.main(["--render-only", str(results), "--doc", str(doc)]) == 1  # two missing
    out, err = capsys.readouterr()
    assert "<!-- sigkill:begin -->\n## SIGKILL soak" in out and "Run 2000-01-02" in out
    assert "fuzz: no figures" in err and "load: no figures" in err
    assert doc.read_text() == original
    # recorded: sigkill's section changes, the two without figures stay as they were
    assert soak.main(["--render-only", str(results), "--record", "--doc", str(doc)]) == 1
    text = doc.read_text()
    assert split(text, "fuzz")[1] == split(original, "fuzz")[1]
    assert split(text, "load")[1] == split(original, "load")[1]
    assert "(3 cores, embedded PostgreSQL)" in split(text, "sigkill")[1]


def test_the_script_runs_as_a_script(tmp_path):
    """``python bench/soak.py`` (bench/ heads sys.path then): --help and a render."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "load.json").write_text(json.dumps(
        {"soak": "load", "date": "2000-01-02", "cores": 2, "machine": "m",
         "figures": SAMPLES["load"]}))
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--render-only",
                          str(results), "--only", "load"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "**4,321 requests, zero 5xx" in run.stdout


def test_the_soaks_are_the_slow_tests_of_their_files():
    """bench/soak.py runs ``pytest -m slow`` on these files: each holds one slow test, the soak
    that publishes the figures of its key."""
    for key, path in soak.SOAKS.items():
        text = (ROOT / path).read_text()
        assert text.count("@pytest.mark.slow") == 1, path
        assert f'publish_soak_figures("{key}"' in text, path
        assert "write_section" not in text and "replace_section" not in text, path
    assert soak.RESULTS_ENV == SOAK_RESULTS_ENV
