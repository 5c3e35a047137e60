"""Training benchmark: the PyTorch dataset's throughput into a training loop, and its memory.

    python bench/training.py [--samples 1000000] [--iq-samples 2000] [--record]

1. A feature_based dataset of --samples samples (the defaults); one epoch of its train split
   through a DataLoader (batch 1024, shuffled, 4 spawned workers), a loop that touches every
   batch: samples per second, and the resident memory of the main process and of its workers
   (sampled every 0.5 s; peak of their sum).
2. An iq_raw dataset of --iq-samples samples (the default capture); one epoch with ``iq=True``
   (IQ regenerated on the fly in the workers): samples per second.

The database is $DATABASE_URL, else a fresh embedded PostgreSQL in a temporary folder.
"""

from __future__ import annotations

import argparse
import sys
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


def epoch(url, name, split, iq, batch_size, workers) -> tuple[float, int, float]:
    """(samples/s, samples, peak MiB of the main process and its workers) over one epoch."""
    import torch
    from torch.utils.data import DataLoader
    from heimdall_synth.service.training.torch_data import SampleDataset
    data = SampleDataset(url, name, split=split, iq=iq)
    loader = DataLoader(data, batch_size=batch_size, shuffle=True, num_workers=workers,
                        multiprocessing_context="spawn", persistent_workers=False)
    me, peak, done = psutil.Process(), [0], threading.Event()

    def watch():
        while not done.is_set():
            procs = [me] + me.children(recursive=True)
            total = 0
            for p in procs:
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    pass
            peak[0] = max(peak[0], total)
            time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0, seen, checksum = time.perf_counter(), 0, torch.zeros(())
    for batch in loader:  # the "training step": touch every tensor of the batch
        checksum += batch["features"].sum() + batch["target"].sum().float()
        seen += len(batch["sample_index"])
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    return seen / seconds, seen, peak[0] / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--iq-samples", type=int, default=2000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    with bench_database("heimdall-bench-training-") as url:
        with connect(url) as conn:
            upgrade(conn)
            make(conn, url, {"name": "features", "num_samples": args.samples, "seed": 1})
            make(conn, url, {"name": "signals", "num_samples": args.iq_samples, "seed": 2,
                             "dataset_type": "iq_raw"})
        rate, seen, peak = epoch(url, "features", "train", False, 1024, 4)
        print(f"features: {seen:,} train samples at {rate:,.0f} samples/s, peak {peak:,.0f} "
              f"MiB (main + 4 workers)", flush=True)
        iq_rate, iq_seen, iq_peak = epoch(url, "signals", None, True, 32, 4)
        print(f"iq_raw with IQ: {iq_seen:,} samples at {iq_rate:,.1f} samples/s, peak "
              f"{iq_peak:,.0f} MiB", flush=True)
    if args.record:
        record("training", "Training data loader (`python bench/training.py --record`)", [
            f"On {machine()}; `SampleDataset` through a `DataLoader` (shuffled, 4 spawned "
            "workers) into a loop that touches every tensor; one embedded PostgreSQL 18.", "",
            "| dataset | samples in the epoch | batch | samples/s | peak memory, main + workers |",
            "|---|---|---|---|---|",
            f"| {args.samples:,} feature_based samples, train split | {seen:,} | 1024 | "
            f"**{rate:,.0f}** | {peak:,.0f} MiB |",
            f"| {args.iq_samples:,} iq_raw samples (7 x 10,000 IQ each, regenerated in the "
            f"workers) | {iq_seen:,} | 32 | **{iq_rate:,.1f}** | {iq_peak:,.0f} MiB |", "",
            "Memory holds the split's sample indices (8 bytes a sample) and the batches in "
            "flight; it does not grow with the dataset's rows."])


if __name__ == "__main__":
    main()
