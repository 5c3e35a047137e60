"""A job on a local Dask cluster against the same job in-process, and what more workers buy.

    python bench/cluster.py [--samples 2000] [--replays 20] [--record]

All in one run, on one database ($DATABASE_URL, else a fresh embedded PostgreSQL), with the
iq_raw defaults (the seven stations, 50 kHz x 200 ms per receiver, features measured, no IQ
stored), where the signals are the work:

1. the job in-process with the job's default threads (all cores), samples committed per second;
2. the same job (another dataset, same seed) on a local cluster of 2 single-threaded worker
   processes: the overhead of distribution is its rate over the in-process rate (two rounds
   in opposite order, averaged);
3. the same on 1 worker: the rate one worker adds;
4. the database's ingest ceiling for this row shape: the job's own rows, read back with a
   binary COPY and copied again into fresh datasets (--replays times, one transaction each);
5. the projection: n workers give min(n x the per-worker rate, the ceiling) samples/s, so
   PostgreSQL becomes the limit at ceiling / per-worker rate workers.

The rows of 1 and 2 are checked identical (C4) before anything is recorded.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

from bench.results import bench_database, machine, record  # noqa: E402
from heimdall_synth.service.engine.cluster import cluster_client  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402
from heimdall_synth.service.storage import jobs  # noqa: E402
from heimdall_synth.service.storage.copy_rows import IQ_COPY_SQL  # noqa: E402
from heimdall_synth.service.storage.database import connect  # noqa: E402
from heimdall_synth.service.storage.ids import new_dataset_id  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402

PROJECTED_WORKERS = (4, 16, 64)


def timed_job(conn, url, name: str, samples: int, **where) -> tuple[float, str, str]:
    """(samples/s, dataset id, device) of an iq_raw job run to completion."""
    created = jobs.create_job(conn, GenerateRequest.from_dict(
        {"name": name, "num_samples": samples, "seed": 7, "dataset_type": "iq_raw"}))
    t0 = time.perf_counter()
    result = run_job(url, created["job_id"], **where)
    seconds = time.perf_counter() - t0
    assert result.status == "completed", result.message
    return samples / seconds, str(created["dataset_id"]), result.device


def row_columns() -> str:
    """The columns an iq_raw job COPYs, in its order."""
    return IQ_COPY_SQL[IQ_COPY_SQL.index("(") + 1:IQ_COPY_SQL.index(")")]


#: What differs between two datasets' rows of the same samples: their ids and times.
OWN_COLUMNS = ("recording_session_id", "dataset_id", "job_id", "created_at")


def same_rows(conn, a: str, b: str) -> bool:
    data = ", ".join(c for c in row_columns().split(", ") if c not in OWN_COLUMNS)
    query = (f"SELECT md5(string_agg(md5(ROW({data})::text), '' ORDER BY sample_index)) "
             "FROM heimdall.measurement_features WHERE dataset_id = %s")
    with conn.transaction():
        return (conn.execute(query, (a,)).fetchone() == conn.execute(query, (b,)).fetchone())


def ingest_ceiling(conn, url, dataset_id: str, replays: int) -> tuple[float, int]:
    """(rows/s, rows) of the bare binary COPY of the dataset's rows into fresh datasets."""
    source = uuid.UUID(dataset_id)
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(f"COPY (SELECT {row_columns()} FROM heimdall.measurement_features WHERE "
                      f"dataset_id = '{source}' ORDER BY sample_index) TO STDOUT "
                      "(FORMAT binary)") as copy:
            data = b"".join(bytes(chunk) for chunk in copy)
        rows = conn.execute("SELECT count(*) FROM heimdall.measurement_features WHERE "
                            "dataset_id = %s", (source,)).fetchone()[0]
    targets = []
    with conn.transaction():
        for _ in range(replays):
            target = new_dataset_id()
            conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, dataset_type, "
                         "seed, config) VALUES (%s, %s, 'iq_raw', 0, '{}'::jsonb)",
                         (target, f"bare-{target}"))
            # a row's dataset_id, and its recording_session_id (the dataset id's first 8 bytes
            # and the sample index), carry the new dataset's id
            new = uuid.UUID(str(target)).bytes
            targets.append(data.replace(source.bytes, new).replace(source.bytes[:8], new[:8]))
    with connect(url) as lane:
        t0 = time.perf_counter()
        for payload in targets:
            with lane.transaction(), lane.cursor() as cur, cur.copy(IQ_COPY_SQL) as copy:
                copy.write(payload)
        seconds = time.perf_counter() - t0
    return rows * replays / seconds, rows * replays


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    with bench_database("heimdall-bench-cluster-") as url, connect(url) as conn:
        with connect(url, autocommit=True) as admin:
            upgrade(admin)
        timed_job(conn, url, "warm-up", 5)  # compiles (the workers load the cache)
        # In-process and on 2 workers, in two rounds of opposite order (A B B A), compared as
        # sums: this machine's speed drifts between runs. The clusters run and are warmed up
        # before the timed jobs: the steady state, not their start-up.
        here = two = 0.0
        with cluster_client(workers=2) as client:
            address = client.scheduler.address
            timed_job(conn, url, "warm-up-2", 20, cluster=address)
            for round_ in (1, 2):
                order = ("here", "there") if round_ == 1 else ("there", "here")
                for where in order:
                    rate, dataset_id, device = timed_job(
                        conn, url, f"{where}-{round_}", args.samples,
                        **({"cluster": address} if where == "there" else {}))
                    print(f"round {round_}, {device}: {rate:.2f} samples/s", flush=True)
                    if where == "here":
                        here, here_id = here + rate / 2, dataset_id
                    else:
                        two, two_id = two + rate / 2, dataset_id
        with cluster_client(workers=1) as client:
            address = client.scheduler.address
            timed_job(conn, url, "warm-up-1", 20, cluster=address)
            one, _, device = timed_job(conn, url, "one-worker", args.samples, cluster=address)
            print(f"{device}: {one:.2f} samples/s", flush=True)
        assert same_rows(conn, here_id, two_id), "the cluster's rows differ from in-process"
        ceiling, copied = ingest_ceiling(conn, url, here_id, args.replays)
        print(f"ingest ceiling: {ceiling:,.0f} rows/s over {copied:,} rows", flush=True)
    per_worker = two / 2
    limit_at = ceiling / per_worker
    projected = {n: min(n * per_worker, ceiling) for n in PROJECTED_WORKERS}
    lines = [
        f"On {machine()}; iq_raw defaults (7 stations, 50 kHz x 200 ms, features, no IQ "
        f"stored), {args.samples:,} samples a job, running local clusters (started and warmed "
        "up before the timed job) of single-threaded worker processes; the scheduler, the "
        "workers, the job and PostgreSQL share the 2 cores.", "",
        "| figure | value |", "|---|---|",
        f"| job in-process (all cores), mean of 2 rounds | {here:.2f} samples/s |",
        f"| the same job on 2 workers, mean of 2 rounds | {two:.2f} samples/s |",
        f"| **overhead of distribution: 2 workers over in-process** | **{two / here:.2f}** "
        "(goal: at least 0.90) |",
        f"| the same job on 1 worker | {one:.2f} samples/s |",
        f"| per-worker rate (2 workers / 2) | {per_worker:.2f} samples/s |",
        f"| database ingest ceiling, this row shape (bare binary COPY, one connection, "
        f"{copied:,} rows) | "
        f"{ceiling:,.0f} rows/s |",
        *(f"| projected, {n} workers | {projected[n]:,.1f} samples/s |"
          for n in PROJECTED_WORKERS),
        f"| workers at which PostgreSQL becomes the limit | about {limit_at:,.0f} |", "",
        "The rows of the 2-worker job were checked identical to the in-process job's. The "
        "projection assumes workers of this machine's speed, one core each, and a "
        "coordinator that keeps up (it packs and COPYs rows; at the ceiling it is the "
        "database's one COPY backend per lane that limits)."]
    if args.record:
        record("cluster", "Dask cluster (`python bench/cluster.py --record`)", lines)


if __name__ == "__main__":
    main()
