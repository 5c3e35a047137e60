"""iq_raw signals benchmark (in progress with the dataset type): samples per second of the
synthesis and of the synthesis with the features measured from the IQ, at 1 and 2 threads.

    python bench/iq.py [--samples 400] [--record]

The default seven stations, 50 kHz x 200 ms, accepted samples of the default configuration. The
storage modes (regenerate, postgres) and the rate of regenerating IQ for reading come with the
dataset type.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numpy as np  # noqa: E402

from heimdall_synth.kernel import GenerationConfig, iq, iq_features, run_attempts  # noqa: E402
from bench.results import machine, record  # noqa: E402

FS, DURATION_MS = 50_000.0, 200.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    cfg = GenerationConfig.from_dict({})
    batch = run_attempts(cfg, 1, 0, int(args.samples * 1.3) + 100)
    rows = np.flatnonzero(batch.valid)[:args.samples]
    n_rx = batch.n_receivers[rows]

    def synth(threads):
        return iq.synthesize(batch, rows, 1, cfg.num_chunks, FS, DURATION_MS, cfg.bandwidth_hz,
                             cfg.noise_floor_dbm, threads=threads)

    x = synth(1)[:2]
    iq_features.measure(x, n_rx[:2], cfg.num_chunks, FS, cfg.bandwidth_hz)  # compile / load
    rates = {}
    for threads in (1, 2):
        best_s = best_f = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            x = synth(threads)
            t1 = time.perf_counter()
            iq_features.measure(x, n_rx, cfg.num_chunks, FS, cfg.bandwidth_hz, threads=threads)
            t2 = time.perf_counter()
            best_s, best_f = min(best_s, t1 - t0), min(best_f, t2 - t0)
        rates[threads] = (len(rows) / best_s, len(rows) / best_f)
        print(f"{threads} thread(s): synthesis {rates[threads][0]:,.0f} samples/s, with features "
              f"{rates[threads][1]:,.0f} samples/s", flush=True)
    speedup = rates[2][1] / rates[1][1]
    print(f"1 -> 2 threads: {speedup:.2f}x")
    if args.record:
        record("iq", "iq_raw signals (`python bench/iq.py --record`)", [
            f"On {machine()}; the default seven stations, {FS / 1000:g} kHz x {DURATION_MS:g} ms "
            f"per receiver, {len(rows):,} accepted samples, best of 3. The dataset type, its "
            "storage and reads are not built yet: these are the kernel's rates.", "",
            "| threads | synthesis (samples/s) | synthesis + features (samples/s) |",
            "|---|---|---|",
            *[f"| {t} | {rates[t][0]:,.0f} | **{rates[t][1]:,.0f}** |" for t in (1, 2)], "",
            f"Speed-up from 1 to 2 threads, synthesis + features: {speedup:.2f}x."])


if __name__ == "__main__":
    main()
