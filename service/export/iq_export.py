"""``export DATASET --iq --out DIR``: an iq_raw dataset's features and its IQ, side by side.

DIR receives ``features.<format>`` (the usual Parquet or NPZ export, ``writers.export_file``) and
``iq.zarr``, a Zarr v3 array of complex64, samples x receiver slots x IQ samples, in sqrt(mW):
row k is sample_index k, a sample's receivers are in its rx_id order and the slots beyond its
receivers are zeros. Both cover the same samples: the features' snapshot fixes the count N,
and since a dataset only ever grows at its end (C2), samples 0 .. N - 1 are the same whenever
they are read.

The IQ is read a block of samples at a time (``engine.signals.sample_blocks``: regenerated from
the jobs' configurations, or read from stored captures) and written as that block's Zarr chunk,
so memory holds one block whatever the dataset's size. The store is written under a hidden
name and renamed into place when complete: a killed export leaves no half store named iq.zarr.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Callable

from heimdall_synth.kernel.config import ConfigError, GenerationConfig
from heimdall_synth.service.engine.request import ConflictError
from heimdall_synth.service.engine.signals import iq_dataset, sample_blocks
from heimdall_synth.service.export.iq_files import ZarrIQWriter
from heimdall_synth.service.export.writers import export_file
from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.storage.datasets import find_dataset

IQ_STORE = "iq.zarr"
#: samples per block read and per Zarr chunk: 16 x 7 receivers x 10,000 IQ samples is 9 MB.
BLOCK_SAMPLES = 16


def export_iq(url: str, ref: str, out_dir, fmt, *, force: bool = False,
              threads: int | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> dict:
    """Write DIR/features.<fmt> and DIR/iq.zarr for iq_raw dataset ``ref`` (id or name).
    ``on_progress(phase, done, total)``: the features export's phases, then "iq" (samples)."""
    t0 = time.perf_counter()
    progress = on_progress or (lambda *a: None)
    out_dir = Path(out_dir)
    try:
        import zarr  # noqa: F401  (the iq extra)
    except ImportError:
        raise ConfigError("iq", "the Zarr store needs the zarr package: pip install "
                                "'heimdall-synth[iq]'") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError("out", f"{out_dir} exists and is not a folder")
    store = out_dir / IQ_STORE
    with connect(url) as conn:
        dataset = iq_dataset(conn, find_dataset(conn, ref)["id"])  # NotIQError otherwise
    if store.exists() and not force:
        raise ConflictError(f"{store} exists; pass --force to overwrite it", ["out"],
                            code="file_exists")
    out_dir.mkdir(parents=True, exist_ok=True)
    features = export_file(url, str(dataset["id"]), fmt, out_dir / f"features{fmt.suffix}",
                           force=force, on_progress=progress)
    samples = int(features["rows"])
    cfg = GenerationConfig.from_dict(dataset["config"])
    # An expansion allowed to override the receivers may have given some samples more.
    slots = max(cfg.max_receivers, int(features["receiver_slots"]))
    partial = out_dir / f".{IQ_STORE}.{os.getpid()}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    try:
        writer = ZarrIQWriter(partial, samples, slots, cfg.iq_capture,
                              cfg.iq_sample_rate_hz, cfg.frequency_mhz * 1e6,
                              chunk_samples=BLOCK_SAMPLES)
        writer.array.attrs.update({"dataset_id": str(dataset["id"]),
                                   "dataset_name": dataset["name"],
                                   "iq_format": cfg.iq_format,
                                   "padding": "receiver slots beyond a sample's receivers "
                                              "(its rx_id) are zeros"})
        progress("iq", 0, samples)
        with connect(url) as conn:
            for first, block, _ in sample_blocks(conn, {**dataset, "num_samples": samples},
                                                 BLOCK_SAMPLES, threads=threads,
                                                 slots=slots):
                writer.append(block)
                progress("iq", first + len(block), samples)
        writer.close()
        if store.exists():
            shutil.rmtree(store)
        partial.rename(store)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    size = sum(p.stat().st_size for p in store.rglob("*") if p.is_file())
    return {**features, "path": str(out_dir), "features": features["path"],
            "iq": str(store), "iq_shape": [samples, slots, cfg.iq_capture],
            "iq_bytes": size, "seconds": round(time.perf_counter() - t0, 3)}
