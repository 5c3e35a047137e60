"""Rows per second of packing accepted samples for binary COPY, alone and with the COPY itself.

    python bench/copy_rows.py [--rows 200000] [--repeat 3] [--database-url URL]

Without --database-url (or $DATABASE_URL) it starts a throwaway embedded PostgreSQL in a
temporary folder. With one, it writes a dataset named ``bench-copy-...`` into that database's
heimdall schema (migrating it first) and deletes it afterwards. Prints results; records nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and bench/kernel.py would shadow the
# `kernel` package: drop the folder.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from heimdall_synth.kernel import GenerationConfig, run_attempts  # noqa: E402
from heimdall_synth.service.storage.copy_rows import copy_batch, pack_feature_rows  # noqa: E402
from heimdall_synth.service.storage.ids import new_dataset_id  # noqa: E402
from heimdall_synth.service.storage.database import EmbeddedPostgres, connect  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402


def accepted_rows(config: GenerationConfig, rows: int):
    batch = run_attempts(config, seed=1, start=0, count=int(rows * 1.3) + 1000).accepted()
    if len(batch) < rows:
        raise SystemExit(f"only {len(batch)} accepted samples; raise the attempt count")
    return batch.take(np.arange(rows))


def best(times: list[float]) -> float:
    return min(times)


def run(url: str, batch, frequency_hz: float, repeat: int) -> None:
    n = len(batch)
    pack_times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        buffer = pack_feature_rows(batch, new_dataset_id(), 0, uuid.uuid4(), frequency_hz)
        pack_times.append(time.perf_counter() - t0)
    size_mb = len(buffer) / 2**20
    print(f"pack alone:   {n / best(pack_times):12,.0f} rows/s  "
          f"(best of {repeat}: {best(pack_times):.3f} s, {size_mb:.0f} MiB, "
          f"{len(buffer) / n:.0f} B/row)")

    with connect(url) as conn:
        upgrade(conn)
        both_times, copy_times, datasets = [], [], []
        try:
            for k in range(repeat):
                dataset_id = new_dataset_id()
                datasets.append(dataset_id)
                conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                             "VALUES (%s, %s, 1, '{}')", (dataset_id, f"bench-copy-{dataset_id}"))
                conn.commit()
                t0 = time.perf_counter()
                buffer = pack_feature_rows(batch, dataset_id, 0, uuid.uuid4(), frequency_hz)
                t1 = time.perf_counter()
                with conn.cursor() as cur:
                    assert copy_batch(cur, buffer) == n
                conn.commit()
                t2 = time.perf_counter()
                both_times.append(t2 - t0)
                copy_times.append(t2 - t1)
        finally:
            conn.rollback()
            for dataset_id in datasets:
                conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s",
                             (dataset_id,))
            conn.commit()
    print(f"COPY alone:   {n / best(copy_times):12,.0f} rows/s  (best {best(copy_times):.3f} s)")
    print(f"pack + COPY:  {n / best(both_times):12,.0f} rows/s  (best {best(both_times):.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--random-receivers", action="store_true",
                        help="variable-length receiver arrays")
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    args = parser.parse_args()

    config = GenerationConfig.from_dict({"use_random_receivers": True}
                                        if args.random_receivers else {})
    t0 = time.perf_counter()
    batch = accepted_rows(config, args.rows)
    print(f"{len(batch):,} accepted rows ({time.perf_counter() - t0:.1f} s to generate), "
          f"{batch.rx_id.shape[1]} receiver slots")
    pack_feature_rows(batch.take(np.arange(10)), new_dataset_id(), 0, None, 1.0)  # warm up JIT
    frequency_hz = config.frequency_mhz * 1e6
    if args.database_url:
        run(args.database_url, batch, frequency_hz, args.repeat)
    else:
        with tempfile.TemporaryDirectory() as folder, \
                EmbeddedPostgres(os.path.join(folder, "pgdata")) as server:
            run(server.url, batch, frequency_hz, args.repeat)


if __name__ == "__main__":
    main()
