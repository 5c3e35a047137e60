"""The soaks: run them, print their figures, and with --record write them into
docs/RELIABILITY.md.

    .venv/bin/python bench/soak.py [--record] [--only sigkill fuzz load] [--render-only FOLDER]
                                   [--doc PATH] [-- PYTEST ARGS...]

The soaks are the tests marked ``slow`` in tests/test_soak_kill.py (``sigkill``: SIGKILLs of a
1,000,000-sample job), tests/test_fuzz_http.py (``fuzz``: the HTTP API fuzzed from its OpenAPI
document) and tests/test_load.py (``load``: many jobs and clients at once); they take many
minutes. The tests never write a tracked file: each prints its figures and, when
``$HEIMDALL_SYNTH_SOAK_RESULTS`` names a folder, writes them there as ``<key>.json``
(tests/helpers.publish_soak_figures). This script runs ``python -m pytest -m slow -s`` on those
files with that variable set to a temporary folder, then renders each JSON into its section of
docs/RELIABILITY.md, the lines between ``<!-- key:begin -->`` and ``<!-- key:end -->``
(bench/results.replace_section): with --record the sections are rewritten, the rest of the
document untouched; without it they are only printed. A soak that fails writes no JSON, and its
section stays as it was.

--render-only FOLDER skips the run and renders the ``<key>.json`` files already in FOLDER (the
figures of an earlier run, or a hand-made file to check the rendering); --doc writes into
another file than docs/RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

# Run as a script, this folder heads sys.path and bench/kernel.py would shadow `kernel`.
sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

from bench.results import replace_section  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
HEADING = "# Reliability"
#: The variable through which the soaks hand over their figures (tests/helpers.py).
RESULTS_ENV = "HEIMDALL_SYNTH_SOAK_RESULTS"
#: Each soak: its section key -> the test file holding it (its one ``slow`` test).
SOAKS = {"sigkill": "tests/test_soak_kill.py", "fuzz": "tests/test_fuzz_http.py",
         "load": "tests/test_load.py"}


# ---- the sections ----------------------------------------------------------------------------

def render_sigkill(result: dict) -> list[str]:
    f = result["figures"]
    return [
        "## SIGKILL soak (`pytest -m slow tests/test_soak_kill.py -s`)", "",
        f"Run {result['date']} on this machine ({result['cores']} cores, embedded PostgreSQL).",
        "",
        f"* A {f['samples']:,}-sample job killed with SIGKILL **{f['kills']} times**"
        f" at random moments, {f['mid_copy']} of them with a COPY in flight; resumed "
        "after each kill until it completed.",
        f"* After every kill ({f['checks']} checks): committed rows intact, "
        "`num_samples == COUNT(*)`, `sample_index` dense with no duplicates, the job found "
        "`running` by a dead process and marked `interrupted` by the recovery, then resumed.",
        f"* At the end: {f['rows']:,} rows, md5 over every data column "
        f"`{f['checksum']}`, identical to the same job run without interruption: "
        "**zero rows lost, duplicated or changed**.",
        f"* Wall time with the kills, restarts and resumes: {f['seconds']:.0f} s."]


#: What the fuzzing found and how it was settled (rewritten with the section).
FUZZ_FINDINGS = [
    "What the fuzzing found, fixed, each kept as a case in "
    "`test_cases_found_by_fuzzing_stay_fixed`, and the choices made:", "",
    "* Text PostgreSQL cannot store (NUL, U+0000; a lone UTF-16 surrogate, which a JSON "
    "`\\ud800` escape lets through) in a name, a description or a receiver's name was a 500: it "
    "is refused, 422 naming the field (`receivers[2].name`), never stripped or replaced. A name "
    "the client sent with a lone surrogate is echoed in errors as the escape's text, so every "
    "body is strict UTF-8 JSON.",
    "* JSON nested too deeply for the parser was a 500: 400 `malformed_json`. A number with more "
    "than 4,300 digits is 400 with a plain message.",
    "* A `charset` other than UTF-8 was decoded as asked (`charset=idna` was accepted): JSON is "
    "UTF-8 (RFC 8259), anything else is 415.",
    "* cancel and resume take no body or `{}`; a JSON `null` was read as no body: a body that "
    "is not an empty object is refused (422).",
    "* PATCH of an unknown dataset with an invalid name answered 404: the whole request is "
    "checked first (422), as POST /generate does.",
    "* The document now tells the whole truth: 422 for unknown query parameters on every "
    "operation, 413 for bodies over the limit, 503 when the database does not answer, the "
    "`Location` header of a 202, the optional empty body of cancel and resume, each event of "
    "the event stream, and closed response schemas (every property listed is sent, nothing "
    "else is).",
    "* Accepted POST /generate requests run real jobs: the fuzzer caps what they ask for (20 "
    "samples, 400 attempts); one explicit request at the documented maxima (100,000,000 "
    "samples, batch size 10,000,000) is accepted and cancelled.",
]


def render_fuzz(result: dict) -> list[str]:
    f = result["figures"]
    refused = sum(n for _, _, n in f["refused"])
    codes: collections.Counter = collections.Counter()
    for status, _, n in f["refused"]:
        codes[status] += n
    by_code = ", ".join(f"{status}: {n:,}" for status, n in sorted(codes.items()))
    by_error = ", ".join(f"{status} `{code}` {n:,}" for status, code, n in sorted(f["refused"]))
    accepted = sum(n for s, n in f["status"].items() if 200 <= int(s) < 300)
    return [
        "## HTTP fuzzing (`pytest -m slow tests/test_fuzz_http.py -s`)", "",
        f"Run {result['date']} on this machine ({result['cores']} cores, shared; embedded "
        f"PostgreSQL), schemathesis {f['schemathesis']}, in-process WSGI: "
        f"{f['seconds']:.0f} s.", "",
        f"* **{f['total']:,} generated requests** from `GET /api/openapi.json`: "
        + ", ".join(f"{n:,} {mode}" for mode, n in f["by_mode"].items()) + ".",
        f"* {accepted:,} accepted (2xx), **{refused:,} refused (4xx)**: {by_code}.",
        f"* Refusals by error code: {by_error}.",
        f"* **5xx: {f['server_errors']}.** Refused requests that changed the database: "
        f"**{f['refused_changed_db']}** (of {f['refusals_checked']:,}, each checked by a "
        f"digest of the three tables); GETs that changed it: {f['safe_changed_db']}.",
        "* Every response matched the document (status code, content type, headers, closed "
        "body schema); every refusal was JSON with `error` and `message`, and its `field` "
        "named something the request sent.", "",
        "| operation | requests |", "|---|---|",
        *(f"| `{label}` | {n:,} |" for label, n in f["per_op"].items()), "",
        *FUZZ_FINDINGS]


#: What the load found and what was fixed (rewritten with the section).
LOAD_FINDINGS = [
    "The status poll is a one-row read with slots of its own: its latency under load is the "
    "machine's saturation (two cores for the jobs, PostgreSQL, the server and 100 client "
    "threads). The dataset GETs are the heaviest requests: each counts the rows of its "
    "datasets for `actual_count` (shown beside `num_samples`), O(rows) per request, and they wait for their "
    "8 slots behind each other.", "",
    "What the load found and what was fixed (each kept by a test in `tests/test_load.py`; "
    "the design is in docs/API.md, \"Capacity\"):", "",
    "* **Event streams starved every other request.** Each open stream held one of the 16 "
    "waitress threads until its job ended: with 30 streams on a 1,000,000-sample job, a "
    "status poll waited 18.7 s (the rest of the job); on a longer job it would time out. "
    "Each stream also held its own database connection, so simply adding threads would have "
    "run into max_connections. Now: 128 threads, at most 48 streams (one more: 503 "
    "`too_many_streams` with `Retry-After: 5`), 80 threads always left for requests, and "
    "one reader and connection for all streams "
    "(`test_streams_at_their_limit_leave_the_status_endpoint_answering`: 48 streams open, "
    "the status endpoint answers, the 49th is refused, the database sees one connection "
    "for them, a client that leaves gives its slot back).",
    "* **A burst of requests opened a connection each**, one per thread (40 concurrent "
    "requests held 40; with more threads for the streams, a burst could pass "
    "max_connections). Now at most 16 requests and 8 dataset reads run the application at "
    "once; the others wait without a connection "
    "(`test_requests_beyond_their_slots_wait_without_a_connection`).",
    "* **With one kind of slot, status polls queued behind dataset reads** (found by this "
    "soak): each dataset read counts the dataset's rows, so they filled the 16 slots and a "
    "one-row status poll waited for one. In soak runs minutes apart on the shared machine "
    "(2026-11-25 figures, not from the run above): status poll p50 365-505 ms and p99 "
    "1.4-1.7 s with one kind of 16 slots, 150 ms and 0.4 s with no bound (64 connections "
    "for requests), 68 ms and 0.3 s with two kinds (16 + 8). Dataset reads now have their "
    "own 8 slots and wait behind each other, not in front of everything else "
    "(the same test: a status poll answers while dataset reads fill their slots).",
    "* **A job waiting for its dataset took a job worker.** Two expansions of one dataset "
    "took both default workers, one only to wait, and a job on another dataset waited as "
    "long as the first expansion ran. Now the jobs of one dataset wait in a line, "
    "`queued`, without a worker "
    "(`test_a_job_waiting_for_its_dataset_leaves_the_workers_to_others`, which also "
    "cancels a queued job and stops the server with jobs in a line).",
]


def render_load(result: dict) -> list[str]:
    f = result["figures"]
    lat, idle = f["latency"], f["idle"]

    def row(label, kind):
        p = lat[kind]
        at_rest = f"{idle[kind]['p50']:.1f}" if kind in idle else "-"
        return (f"| {label} | {p['n']:,} | {p['p50']:.1f} | {p['p99']:.1f} | "
                f"{p['max']:.1f} | {at_rest} |")

    clients = f["pollers"] + f["streamers"]
    return [
        "## Load soak (`pytest -m slow tests/test_load.py -s`)", "",
        f"Run {result['date']} on this machine ({result['machine']}; embedded "
        f"PostgreSQL; server, database, jobs and the {clients} client threads on the same "
        f"{result['cores']} cores, shared with other work).", "",
        f"* **{f['jobs']} jobs started at once** on {f['datasets']} datasets, "
        f"{f['same_dataset']} of them expansions of one dataset; {f['held_jobs']} "
        f"held by the server at once (pending, queued or running; {f['workers']} job "
        f"workers, up to {f['running_jobs']} running side by side).",
        f"* **{clients} clients**: {f['pollers']} "
        f"polling (every {f['poll_every_s']} s) `GET /jobs/{{id}}`, "
        f"`GET /datasets/{{id}}` and `GET /datasets`; {f['streamers']} holding event "
        f"streams, **{f['max_open_streams']} open at once** at the peak, "
        f"{f['streams']:,} streams in all, each read to its end.",
        f"* **{f['requests']:,} requests, zero 5xx, zero transport errors** (30 s "
        "timeout; no 503 either: the streams stayed within their limit of "
        f"{f['max_event_streams']}); every stream ended with exactly one `final` event "
        "matching the job row.",
        f"* PostgreSQL client connections at the peak: {f['backends']} "
        "(max_connections 100; the open streams share one).",
        f"* {f['load_samples']:,} samples generated under load in "
        f"{f['load_s']:.1f} s: **{f['samples_per_s']:,.0f} samples/s** overall; "
        f"**{f['rows_verified']:,} rows verified**: every job completed exactly, "
        "`num_samples == COUNT(*)` == initial + expansions, `sample_index` dense and unique, "
        "each dataset's jobs chained (`samples_offset` = the previous job's end, started after "
        "it finished), and every data column of every row identical to the same requests run "
        "one after another in a fresh database.", "",
        "Latency (ms) as the clients measured it, request sent to reply read; the last column "
        "is the same request sent alone to the idle server after the load (same rows):", "",
        "| request | count | p50 | p99 | max | p50 idle |", "|---|---|---|---|---|---|",
        row("`GET /jobs/{id}` (status poll)", "status"),
        row("`GET /datasets/{id}` (counts its rows)", "dataset"),
        row("`GET /datasets` (counts every dataset's rows)", "datasets"),
        row("`GET /jobs/{id}/events` (until the headers)", "stream"), "",
        *LOAD_FINDINGS]


RENDERERS = {"sigkill": render_sigkill, "fuzz": render_fuzz, "load": render_load}


def render(folder: Path, keys, doc: Path | None) -> list[str]:
    """Render ``folder``/<key>.json for each key: into ``doc`` (its section replaced) when
    given, else printed. Returns the keys that had no figures."""
    missing = []
    for key in keys:
        path = Path(folder) / f"{key}.json"
        if not path.exists():
            missing.append(key)
            print(f"{key}: no figures ({path} is missing: the soak failed or did not run); "
                  "its section is left as it was", file=sys.stderr)
            continue
        result = json.loads(path.read_text())
        lines = RENDERERS[key](result)
        if doc is None:
            print("\n".join([f"<!-- {key}:begin -->", *lines, f"<!-- {key}:end -->"]) + "\n")
        else:
            replace_section(doc, key, lines, HEADING)
            print(f"{key}: recorded in {doc}")
    return missing


# ---- the run ---------------------------------------------------------------------------------

def run_soaks(keys, folder: Path, pytest_args) -> int:
    """``python -m pytest -m slow -s`` on the soaks' files, their figures into ``folder``."""
    cmd = [sys.executable, "-m", "pytest", "-m", "slow", "-s", "-p", "no:cacheprovider",
           *(SOAKS[k] for k in keys), *pytest_args]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=ROOT, env={**os.environ, RESULTS_ENV: str(folder)}).returncode


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", action="store_true",
                    help="write the figures into their sections of the document")
    ap.add_argument("--only", nargs="+", choices=list(SOAKS), default=list(SOAKS),
                    metavar="KEY", help=f"the soaks to run (of {', '.join(SOAKS)}; default all)")
    ap.add_argument("--render-only", type=Path, metavar="FOLDER",
                    help="run nothing: render the <key>.json files in FOLDER")
    ap.add_argument("--doc", type=Path, default=RELIABILITY,
                    help="the document --record writes (default docs/RELIABILITY.md)")
    ap.add_argument("pytest_args", nargs="*", help="more pytest arguments (after --)")
    args = ap.parse_args(argv)
    doc = args.doc if args.record else None
    if args.render_only is not None:
        if args.pytest_args:
            ap.error("--render-only runs nothing: no pytest arguments")
        return 1 if render(args.render_only, args.only, doc) else 0
    with tempfile.TemporaryDirectory(prefix="heimdall-soak-") as folder:
        rc = run_soaks(args.only, Path(folder), args.pytest_args)
        missing = render(Path(folder), args.only, doc)
    return rc or (1 if missing else 0)


if __name__ == "__main__":
    sys.exit(main())
