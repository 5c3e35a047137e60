"""Kernel benchmark: attempts per second, speed-up over the reference, compile and cache load.

    python bench/kernel.py [--attempts 400000] [--record]

Prints the figures; with --record it also writes them into bench/RESULTS.md (the section
between the "kernel" markers is replaced) with the machine and the date.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder heads sys.path and this file would shadow the `kernel` package.
sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numba  # noqa: E402

from heimdall_synth.kernel import GenerationConfig, reference, run_attempts  # noqa: E402
from heimdall_synth.kernel.batch import AttemptBatch, pack_config  # noqa: E402
from bench.results import machine, record  # noqa: E402

CASES = {
    "default 7 receivers, all terms": {},
    "random 5-10 receivers, hexagonal": {"use_random_receivers": True},
}

LOAD_SCRIPT = """
import time
t0 = time.perf_counter()
from heimdall_synth.kernel import run_attempts
run_attempts({}, 1, 0, 100)
print(time.perf_counter() - t0)
"""


def rate(cfg, threads: int, attempts: int, reuse: bool, repeats: int = 5) -> float:
    """Best of `repeats` runs of `attempts` attempts, allocating the output each time or
    reusing one buffer (as the generation loop does)."""
    inputs = pack_config(cfg)
    out = AttemptBatch.empty(attempts, inputs.max_receivers) if reuse else None
    run_attempts(cfg, 1, 0, 1000, threads=threads, inputs=inputs)  # compiled / loaded
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        run_attempts(cfg, 1, r * attempts, attempts, threads=threads, inputs=inputs, out=out)
        best = min(best, time.perf_counter() - t0)
    return attempts / best


def reference_rate(cfg, attempts: int = 20_000) -> float:
    t0 = time.perf_counter()
    reference.run_attempts(cfg, 1, 0, attempts)
    return attempts / (time.perf_counter() - t0)


def load_times() -> tuple[float, float]:
    """(cold, warm): first call in a fresh process with an empty, then a filled, cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        times = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", LOAD_SCRIPT], env=env, check=True,
                                 capture_output=True, text=True).stdout
            times.append(float(out))
    return times[0], times[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=400_000)
    ap.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    args = ap.parse_args()

    lines = []
    rows = ["| case (attempts/s) | 1 thread, fresh | 2 threads, fresh | 1 thread, reused | "
            "2 threads, reused | 2-thread speed-up (reused) | reference | kernel / reference |",
            "|---|---|---|---|---|---|---|---|"]
    for name, overrides in CASES.items():
        cfg = GenerationConfig.from_dict(overrides)
        f1, f2 = rate(cfg, 1, args.attempts, False), rate(cfg, 2, args.attempts, False)
        r1, r2 = rate(cfg, 1, args.attempts, True), rate(cfg, 2, args.attempts, True)
        ref = reference_rate(cfg)
        rows.append(f"| {name} | {f1:,.0f} | {f2:,.0f} | {r1:,.0f} | **{r2:,.0f}** | "
                    f"{r2 / r1:.2f}x | {ref:,.0f} | {r1 / ref:.0f}x (1 thread), "
                    f"{r2 / ref:.0f}x (2 threads) |")
        print(rows[-1], flush=True)
    cold, warm = load_times()
    lines += rows
    lines += ["", f"Kernel load in a fresh process (import + first call of 100 attempts): "
              f"cold cache {cold:.2f} s (compiles), warm cache {warm:.2f} s."]
    print(lines[-1])
    if args.record:
        record("kernel", "Kernel (`python bench/kernel.py --record`)", [
            f"On {machine()}, threading layer {numba.threading_layer()}; {args.attempts:,} "
            "attempts per run, best of 5. `run_attempts` allocating its output each call "
            "(fresh) and reusing one buffer (`out=`, as the generation loop does).", "", *lines])


if __name__ == "__main__":
    main()
