"""Training benchmark: the PyTorch datasets' throughput into a training loop, and their memory.

    python bench/training.py [--samples 1000000] [--small 100000] [--iq-samples 2000] [--record]

1. feature_based datasets of --small and --samples samples (the defaults); one epoch of their
   train split through a DataLoader (batch 1024, shuffled, 4 spawned workers) in a FRESH
   process (spawned: it has run nothing else), a loop that touches every batch: samples per
   second, and the peak resident memory of the loader's process and of its largest worker
   (sampled every 0.2 s). Bounded memory: the workers' peak does not grow with the rows; the
   main process grows by the split's indices (8 bytes a sample).
2. The same epoch of the large dataset read from its Parquet export (``ParquetSampleDataset``,
   ``RowGroupShuffle``).
3. An iq_raw dataset of --iq-samples samples (the default capture); one epoch with ``iq=True``
   (IQ regenerated on the fly in the workers): samples per second.

The database is $DATABASE_URL, else a fresh embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import psutil  # noqa: E402

from bench.results import bench_database, machine, record  # noqa: E402
from heimdall_synth.service.engine.loop import run_job  # noqa: E402
from heimdall_synth.service.engine.request import GenerateRequest  # noqa: E402
from heimdall_synth.service.storage import jobs  # noqa: E402
from heimdall_synth.service.storage.database import connect  # noqa: E402
from heimdall_synth.service.storage.migrations import upgrade  # noqa: E402


def make(conn, url, request) -> None:
    created = jobs.create_job(conn, GenerateRequest.from_dict(request))
    assert run_job(url, created["job_id"]).status == "completed"


def epoch(source, name, split, iq, batch_size, workers) -> dict:
    """One epoch (run in a fresh process): samples/s, samples, and the peak MiB of this
    process and of its largest worker. ``source``: a database URL, or a Parquet file."""
    import torch
    from torch.utils.data import DataLoader
    from heimdall_synth.service.training.torch_data import (ParquetSampleDataset,
                                                            RowGroupShuffle, SampleDataset)
    me, peaks, done = psutil.Process(), {"main": 0, "worker": 0}, threading.Event()

    def watch():
        while not done.is_set():
            try:
                peaks["main"] = max(peaks["main"], me.memory_info().rss)
                for child in me.children(recursive=True):
                    peaks["worker"] = max(peaks["worker"], child.memory_info().rss)
            except psutil.Error:
                pass
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    if source.endswith(".parquet"):
        data = ParquetSampleDataset(source, split=split)
        order = {"sampler": RowGroupShuffle(data, seed=0)}
    else:
        data = SampleDataset(source, name, split=split, iq=iq)
        order = {"shuffle": True}
    loader = DataLoader(data, batch_size=batch_size, num_workers=workers,
                        multiprocessing_context="spawn", **order)
    t0, seen, checksum = time.perf_counter(), 0, torch.zeros(())
    for batch in loader:  # the "training step": touch every tensor of the batch
        checksum += batch["features"].sum() + batch["target"].sum().float()
        seen += len(batch["sample_index"])
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    return {"rate": seen / seconds, "seen": seen, "main_mib": peaks["main"] / 2**20,
            "worker_mib": peaks["worker"] / 2**20}


def _epoch_child(queue, *args) -> None:
    queue.put(epoch(*args))


def fresh_epoch(*args) -> dict:
    """``epoch(*args)`` in a new spawned process: its memory is the loader's alone."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_epoch_child, args=(queue, *args))
    child.start()
    result = queue.get()
    child.join()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=100_000)
    ap.add_argument("--iq-samples", type=int, default=2000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    from heimdall_synth.service.export.writers import check_format, export_file
    with bench_database("heimdall-bench-training-") as url, \
            tempfile.TemporaryDirectory(prefix="heimdall-bench-parquet-") as tmp:
        with connect(url) as conn:
            upgrade(conn)
            make(conn, url, {"name": "small", "num_samples": args.small, "seed": 1})
            make(conn, url, {"name": "features", "num_samples": args.samples, "seed": 1})
            make(conn, url, {"name": "signals", "num_samples": args.iq_samples, "seed": 2,
                             "dataset_type": "iq_raw"})
        parquet = str(Path(tmp) / "features.parquet")
        export_file(url, "features", check_format("parquet"), parquet)
        runs = {}
        for key, source, name, split, iq, batch in (
                ("small", url, "small", "train", False, 1024),
                ("large", url, "features", "train", False, 1024),
                ("parquet", parquet, "features", "train", False, 1024),
                ("iq", url, "signals", None, True, 32)):
            runs[key] = r = fresh_epoch(source, name, split, iq, batch, 4)
            print(f"{key}: {r['seen']:,} samples at {r['rate']:,.1f} samples/s; peak "
                  f"{r['main_mib']:,.0f} MiB main, {r['worker_mib']:,.0f} MiB largest worker",
                  flush=True)
    if args.record:
        def row(what, r, batch):
            return (f"| {what} | {r['seen']:,} | {batch} | **{r['rate']:,.1f}** | "
                    f"{r['main_mib']:,.0f} MiB | {r['worker_mib']:,.0f} MiB |")
        small, large = runs["small"], runs["large"]
        record("training", "Training data loader (`python bench/training.py --record`)", [
            f"On {machine()}; a `DataLoader` (4 spawned workers) in a fresh process into a loop "
            "that touches every tensor; one embedded PostgreSQL 18.", "",
            "| source | samples in the epoch | batch | samples/s | peak, loader's process | "
            "peak, largest worker |",
            "|---|---|---|---|---|---|",
            row(f"PostgreSQL, {args.small:,} feature_based samples, train split, shuffled",
                small, 1024),
            row(f"PostgreSQL, {args.samples:,} feature_based samples, train split, shuffled",
                large, 1024),
            row(f"Parquet export of the {args.samples:,}, train split, `RowGroupShuffle`",
                runs["parquet"], 1024),
            row(f"PostgreSQL, {args.iq_samples:,} iq_raw samples (7 x 10,000 IQ each, "
                "regenerated in the workers)", runs["iq"], 32), "",
            f"Ten times the rows: the loader's process grew by "
            f"{large['main_mib'] - small['main_mib']:,.0f} MiB (the split's indices are "
            f"{8 * large['seen'] / 2**20:,.1f} MiB), its largest worker by "
            f"{large['worker_mib'] - small['worker_mib']:,.0f} MiB: memory does not grow with "
            "the dataset beyond the indices."])


if __name__ == "__main__":
    main()
