"""Kernel benchmark: attempts per second, speed-up over the reference, compile and cache load.

    python bench/kernel.py [--attempts 400000] [--model1 COMMIT] [--record]

Model version 2 without a terrain (the default seven stations; random receivers) and on a
synthetic 3 arc-second terrain over the transmitter area (bench/synthetic_dem.py: the stations
read their loss maps; random receivers walk every link's profile). With --model1, the same two
cases without terrain are measured on model version 1's kernel, run from that commit's tree in a
subprocess (git worktree), so both models are measured the same day on the same machine.

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
from heimdall_synth.kernel.batch import AttemptBatch, pack_config, transmitter_box  # noqa: E402
from bench.results import machine, record  # noqa: E402
from bench.synthetic_dem import hills_grid  # noqa: E402

#: name: (overrides, on a terrain, attempts relative to --attempts)
CASES = {
    "default 7 stations, all terms": ({}, False, 1.0),
    "random 5-10 receivers, hexagonal": ({"use_random_receivers": True}, False, 1.0),
    "default 7 stations on a terrain (loss maps)": ({"terrain": "hills"}, True, 1.0),
    "random 5-10 receivers on a terrain (every profile)": (
        {"use_random_receivers": True, "terrain": "hills"}, True, 0.1),
}

MODEL1_SCRIPT = """
import sys, time
from heimdall_synth.kernel import GenerationConfig, run_attempts
from heimdall_synth.kernel.batch import AttemptBatch, pack_config
n = int(sys.argv[1])
for overrides in ({}, {"use_random_receivers": True}):
    cfg = GenerationConfig.from_dict(overrides)
    inputs = pack_config(cfg)
    out = AttemptBatch.empty(n, inputs.max_receivers)
    run_attempts(cfg, 1, 0, 1000, threads=1, inputs=inputs)
    for threads in (1, 2):
        best = float("inf")
        for r in range(5):
            t0 = time.perf_counter()
            run_attempts(cfg, 1, r * n, n, threads=threads, inputs=inputs, out=out)
            best = min(best, time.perf_counter() - t0)
        print(n / best)
"""

LOAD_SCRIPT = """
import time
t0 = time.perf_counter()
from heimdall_synth.kernel import run_attempts
run_attempts({}, 1, 0, 100)
print(time.perf_counter() - t0)
"""


def rate(cfg, threads: int, attempts: int, reuse: bool, repeats: int = 5, grid=None) -> float:
    """Best of `repeats` runs of `attempts` attempts, allocating the output each time or
    reusing one buffer (as the generation loop does)."""
    inputs = pack_config(cfg, 1, grid)
    out = AttemptBatch.empty(attempts, inputs.max_receivers) if reuse else None
    run_attempts(cfg, 1, 0, 1000, threads=threads, inputs=inputs)  # compiled / loaded
    best = float("inf")
    for r in range(repeats):
        t0 = time.perf_counter()
        run_attempts(cfg, 1, r * attempts, attempts, threads=threads, inputs=inputs, out=out)
        best = min(best, time.perf_counter() - t0)
    return attempts / best


def reference_rate(cfg, attempts: int = 20_000, grid=None) -> float:
    t0 = time.perf_counter()
    reference.run_attempts(cfg, 1, 0, attempts, terrain=grid)
    return attempts / (time.perf_counter() - t0)


def model1_rates(commit: str, attempts: int) -> list[float]:
    """[default 1 thread, default 2 threads, random 1, random 2] attempts/s of model 1's
    kernel at ``commit``, from a temporary worktree of this repository."""
    repo = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        tree, package = Path(tmp) / "tree", Path(tmp) / "pkg"
        subprocess.run(["git", "-C", str(repo), "worktree", "add", "--detach", "-q", str(tree),
                        commit], check=True)
        try:
            package.mkdir()
            (package / "heimdall_synth").symlink_to(tree)  # the package root is the tree's
            env = {**os.environ, "PYTHONPATH": str(package),
                   "NUMBA_CACHE_DIR": str(Path(tmp) / "cache")}
            out = subprocess.run([sys.executable, "-c", MODEL1_SCRIPT, str(attempts)], env=env,
                                 check=True, capture_output=True, text=True, cwd=tmp).stdout
        finally:
            subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                           check=True)
    return [float(x) for x in out.split()]


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
    ap.add_argument("--model1", default="fea7690",
                    help="commit whose kernel is model version 1 ('' to skip)")
    ap.add_argument("--record", action="store_true", help="write bench/RESULTS.md")
    args = ap.parse_args()

    grid = hills_grid(transmitter_box(GenerationConfig.from_dict({"use_random_receivers": True})))
    lines = []
    rows = ["| case (attempts/s) | 1 thread, fresh | 2 threads, fresh | 1 thread, reused | "
            "2 threads, reused | 2-thread speed-up (reused) | reference | kernel / reference |",
            "|---|---|---|---|---|---|---|---|"]
    for name, (overrides, on_terrain, share) in CASES.items():
        cfg = GenerationConfig.from_dict(overrides)
        g = grid if on_terrain else None
        n = int(args.attempts * share)
        f1, f2 = rate(cfg, 1, n, False, grid=g), rate(cfg, 2, n, False, grid=g)
        r1, r2 = rate(cfg, 1, n, True, grid=g), rate(cfg, 2, n, True, grid=g)
        ref = reference_rate(cfg, 2_000 if on_terrain else 20_000, grid=g)
        rows.append(f"| {name} | {f1:,.0f} | {f2:,.0f} | {r1:,.0f} | **{r2:,.0f}** | "
                    f"{r2 / r1:.2f}x | {ref:,.0f} | {r1 / ref:.0f}x (1 thread), "
                    f"{r2 / ref:.0f}x (2 threads) |")
        print(rows[-1], flush=True)
    if args.model1:
        m1 = model1_rates(args.model1, args.attempts)
        rows.append(f"| model 1 ({args.model1}): default 7 receivers | | | {m1[0]:,.0f} | "
                    f"**{m1[1]:,.0f}** | {m1[1] / m1[0]:.2f}x | | |")
        rows.append(f"| model 1 ({args.model1}): random 5-10 receivers | | | {m1[2]:,.0f} | "
                    f"**{m1[3]:,.0f}** | {m1[3] / m1[2]:.2f}x | | |")
        print(*rows[-2:], sep="\n", flush=True)
    cold, warm = load_times()
    lines += rows
    rows_, cols_ = grid.heights.shape
    lines += ["", f"The terrain: {rows_:,} x {cols_:,} cells of 3 arc-seconds over the random "
              "receivers' area and margin (bench/synthetic_dem.py, rolling hills); random "
              f"receivers on it run {int(args.attempts * 0.1):,} attempts per run.", "",
              f"Kernel load in a fresh process (import + first call of 100 attempts): "
              f"cold cache {cold:.2f} s (compiles), warm cache {warm:.2f} s."]
    print(lines[-1])
    if args.record:
        record("kernel", "Kernel (`python bench/kernel.py --record`)", [
            f"On {machine()}, threading layer {numba.threading_layer()}; {args.attempts:,} "
            "attempts per run, best of 5. `run_attempts` allocating its output each call "
            "(fresh) and reusing one buffer (`out=`, as the generation loop does).", "", *lines])


if __name__ == "__main__":
    main()
