"""Kernel benchmark: attempts per second, speed-up over the reference, compile and cache load.

    python bench/kernel.py [--attempts 400000] [--record]

Prints the figures; with --record it also writes them into bench/RESULTS.md (the section
between the "kernel" markers is replaced) with the machine and the date.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the
# `kernel` package: drop the folder (the installed package is what we measure).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numba  # noqa: E402
import numpy as np  # noqa: E402

from kernel import GenerationConfig, reference, run_attempts  # noqa: E402
from kernel.batch import pack_config  # noqa: E402

CASES = {
    "default 7 receivers, all terms": {},
    "random 5-10 receivers, hexagonal": {"use_random_receivers": True},
}
RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- kernel:begin -->", "<!-- kernel:end -->"

LOAD_SCRIPT = """
import time
t0 = time.perf_counter()
from kernel import run_attempts
run_attempts({}, 1, 0, 100)
print(time.perf_counter() - t0)
"""


def rate(cfg, threads: int, attempts: int, repeats: int = 5) -> float:
    """Best of `repeats` runs of `attempts` attempts (run_attempts allocates its output)."""
    inputs = pack_config(cfg)
    run_attempts(cfg, 1, 0, 1000, threads=threads, inputs=inputs)  # compiled / loaded
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        run_attempts(cfg, 1, r * attempts, attempts, threads=threads, inputs=inputs)
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


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, "
            f"numba {numba.__version__}, numpy {np.__version__}, "
            f"threading layer {numba.threading_layer()}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=400_000)
    ap.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    args = ap.parse_args()

    lines = []
    rows = ["| case | 1 thread | 2 threads | 2-thread speed-up | reference | kernel / reference |",
            "|---|---|---|---|---|---|"]
    for name, overrides in CASES.items():
        cfg = GenerationConfig.from_dict(overrides)
        r1, r2 = rate(cfg, 1, args.attempts), rate(cfg, 2, args.attempts)
        ref = reference_rate(cfg)
        rows.append(f"| {name} | {r1:,.0f}/s | {r2:,.0f}/s | {r2 / r1:.2f}x | {ref:,.0f}/s | "
                    f"{r2 / ref:.0f}x (2 threads), {r1 / ref:.0f}x (1 thread) |")
        print(rows[-1], flush=True)
    cold, warm = load_times()
    lines += rows
    lines += ["", f"Kernel load in a fresh process (import + first call of 100 attempts): "
              f"cold cache {cold:.2f} s (compiles), warm cache {warm:.2f} s."]
    print(lines[-1])
    if args.record:
        section = "\n".join([
            BEGIN, "## Kernel (`python bench/kernel.py --record`)", "",
            f"Measured {dt.date.today().isoformat()} on {machine()}; "
            f"{args.attempts:,} attempts per run, best of 5.", "", *lines, END])
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + section + text[text.index(END) + len(END):]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        RESULTS.write_text(text)
        print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
