"""Export benchmark: rate and peak memory of `heimdall-synth export` against the data's size.

    python bench/export.py [--samples 1000000] [--small 250000] [--runs 2] [--record]

Generates two datasets of the default configuration (--samples and --small rows) and one of
random receivers (--small rows: the padded path) into a fresh embedded PostgreSQL (or
$DATABASE_URL), then exports each to Parquet and to NPZ with the real command line, each export
in its own process, --runs times. For each: the export's own time (rows/s, from the command's
--json summary), the file's size, the size of the exported values (the NPZ's .npy bytes: N x
the row's in-memory size) and the process's peak resident memory (the kernel's high-water
mark, VmHWM, read by the process itself just before it exits). The bound is shown by the peak
staying the same while the rows grow fourfold. A baseline process that only imports what an
export imports gives the fixed part of the peak.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script, this folder heads sys.path and bench/kernel.py would shadow `kernel`.
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "bench" else p for p in sys.path]

from bench.results import machine, record  # noqa: E402
from heimdall_synth.service.storage import jobs  # noqa: E402
from heimdall_synth.service.storage.database import EmbeddedPostgres, connect  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402

# The child: the CLI's main(), then its own peak RSS on stderr. The peak is VmHWM, the
# high-water mark of this process's memory since its exec: getrusage's ru_maxrss would not do,
# Linux carries it over from the parent that forked the child (this script, holding GBs).
PEAK = ("def peak():\n"
        "    for line in open('/proc/self/status'):\n"
        "        if line.startswith('VmHWM:'):\n"
        "            return int(line.split()[1]) * 1024\n")
CHILD = ("import sys\n" + PEAK +
         "from heimdall_synth.service.cli.main import main\n"
         "code = main(sys.argv[1:])\n"
         "print(f'peak_rss {peak()}', file=sys.stderr)\n"
         "sys.exit(code)\n")
BASELINE = ("import sys\n" + PEAK +
            "import numpy, psycopg, pyarrow, pyarrow.parquet\n"
            "import heimdall_synth.service.cli.main, heimdall_synth.service.export.writers\n"
            "import heimdall_synth.service.storage.database, heimdall_synth.service.storage.migrations\n"
            "print(peak())\n")


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def export_once(url: str, dataset: str, fmt: str, out: Path) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", CHILD, "--json", "export", dataset,
                          "--format", fmt, "--out", str(out), "--force"],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"export failed: {res.stderr}")
    summary = json.loads(res.stdout)
    peak = int(res.stderr.rsplit("peak_rss ", 1)[1].split()[0])
    data_bytes = None
    if fmt == "npz":
        import zipfile
        with zipfile.ZipFile(out) as z:
            data_bytes = sum(i.file_size for i in z.infolist() if i.filename.endswith(".npy"))
    out.unlink()
    return {**summary, "peak_rss": peak, "process_s": wall, "data_bytes": data_bytes}


def server_copy_rate(conn, name: str) -> float | None:
    """Rows/s of the server's own binary COPY of the dataset's rows to /dev/null (ordered by
    sample_index, nothing sent to a client): what the server alone needs, the ceiling of any
    export. Needs a superuser (the embedded server's); None otherwise."""
    if not conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
        return None
    columns = ", ".join(r[0] for r in conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'heimdall.measurement_features'"
        "::regclass AND attnum > 0 AND NOT attisdropped AND attname <> 'dataset_id' "
        "ORDER BY attnum"))
    dataset_id, rows = conn.execute("SELECT id, num_samples FROM heimdall.synthetic_datasets "
                                    "WHERE name = %s", (name,)).fetchone()
    t0 = time.perf_counter()
    conn.execute(f"COPY (SELECT {columns} FROM heimdall.measurement_features WHERE dataset_id "
                 f"= '{dataset_id}' ORDER BY sample_index) TO '/dev/null' (FORMAT BINARY)")
    return rows / (time.perf_counter() - t0)


def generate(conn, url, name, n, **extra) -> None:
    created = jobs.create_job(conn, GenerateRequest.from_dict(
        {"name": name, "num_samples": n, "seed": 1, **extra}))
    t0 = time.perf_counter()
    result = run_job(url, created["job_id"])
    print(f"generated {name}: {result.final_count:,} rows in {time.perf_counter() - t0:.1f} s",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=250_000)
    ap.add_argument("--runs", type=int, default=2, help="exports of each dataset and format")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    server, url = None, os.environ.get("DATABASE_URL")
    tmp = Path(tempfile.mkdtemp(prefix="heimdall-bench-export-"))
    if not url:
        server = EmbeddedPostgres(tmp / "pgdata").start()
        url = server.url
    try:
        conn = connect(url, autocommit=True)
        upgrade(conn)
        tag = os.urandom(3).hex()
        sets = [(f"export-{tag}-large", args.samples, {}),
                (f"export-{tag}-small", args.small, {}),
                (f"export-{tag}-random", args.small, {"use_random_receivers": True})]
        for name, n, extra in sets:
            generate(conn, url, name, n, **extra)
        conn.execute("VACUUM ANALYZE heimdall.measurement_features")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        baseline = int(subprocess.run([sys.executable, "-c", BASELINE], env=env, cwd=ROOT,
                                      capture_output=True, text=True, check=True).stdout)
        print(f"baseline (imports only): peak RSS {mib(baseline)}", flush=True)
        ceiling = server_copy_rate(conn, sets[0][0])
        if ceiling:
            print(f"server alone (COPY of the large dataset's rows to /dev/null): "
                  f"{ceiling:,.0f} rows/s", flush=True)
        rows = []
        for fmt in ("parquet", "npz"):
            for name, n, extra in sets:
                runs = [export_once(url, name, fmt, tmp / f"out.{fmt}") for _ in range(args.runs)]
                for r in runs:
                    print(f"{fmt:7} {n:>9,} rows ({'random' if extra else 'fixed'} receivers, "
                          f"R={r['receiver_slots']}): {r['seconds']:.1f} s = "
                          f"{r['rows'] / r['seconds']:,.0f} rows/s (process {r['process_s']:.1f}"
                          f" s), file {mib(r['bytes'])}, peak RSS {mib(r['peak_rss'])}",
                          flush=True)
                rows.append((fmt, n, extra, runs))
        load = os.getloadavg()
        print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
        if args.record:
            version = conn.execute("SHOW server_version").fetchone()[0]
            lines = [
                f"On {machine()}; PostgreSQL {version} on the same machine; pyarrow "
                f"{__import__('pyarrow').__version__}. Each export is `heimdall-synth --json "
                "export DATASET --format F --out PATH` in its own process (default chunk "
                "16,384 rows); rate = rows / the export's own time; peak RSS = the process's "
                f"high-water mark (VmHWM). {args.runs} runs each, all listed. Load average "
                f"at the end {load[0]:.1f} (other work shared the 2 cores).", "",
                "| format | rows | receivers | rows/s (runs) | file | values exported | "
                "peak RSS (runs) |", "|---|---|---|---|---|---|---|"]
            npz_size = {(n, bool(extra)): runs[0]["data_bytes"]
                        for fmt, n, extra, runs in rows if fmt == "npz"}
            for fmt, n, extra, runs in rows:
                lines.append(
                    f"| {fmt} | {n:,} | {'random 5-10' if extra else 'fixed 7'} | "
                    + ", ".join(f"{r['rows'] / r['seconds']:,.0f}" for r in runs)
                    + f" | {mib(runs[0]['bytes'])} | {mib(npz_size[(n, bool(extra))])} | "
                    + ", ".join(mib(r["peak_rss"]) for r in runs) + " |")
            peak = {fmt: max(r["peak_rss"] for f, n, e, runs in rows if f == fmt for r in runs)
                    for fmt in ("parquet", "npz")}
            if ceiling:
                lines += ["", f"The server alone (its binary COPY of the {args.samples:,} rows, "
                              f"ordered, to /dev/null on the server: the ceiling of any export "
                              f"through one connection): {ceiling:,.0f} rows/s."]
            lines += ["", f"Baseline (a process that only imports what an export imports): "
                          f"{mib(baseline)}. **Bound: peak RSS at most "
                          f"{mib(max(peak.values()))} (Parquet {mib(peak['parquet'])}, NPZ "
                          f"{mib(peak['npz'])}) whatever N**: the same for {args.small:,} and "
                          f"{args.samples:,} rows, while the exported values grow from "
                          f"{mib(npz_size[(args.small, False)])} to "
                          f"{mib(npz_size[(args.samples, False)])}."]
            record("export", "Export (`python bench/export.py --record`)", lines)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)  # the embedded cluster: GBs


if __name__ == "__main__":
    main()
