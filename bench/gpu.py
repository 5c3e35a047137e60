"""The GPU path against the CPU kernel on the same machine.

    python bench/gpu.py [--attempts 1000000] [--samples 200000] [--record]

On a machine with a CUDA device (the gpu extra and numba-cuda[cu12]):
1. attempts/s of the attempt kernel on the device (``run_attempts_gpu``) and on the CPU
   (``run_attempts``, all cores) over --attempts attempts of the default network;
2. their agreement over those attempts: integer outputs, validity decisions (how many differ,
   and whether each lies within MARGIN of a threshold), and the largest relative difference of
   the floating-point outputs;
3. the end-to-end rate of a --samples job with use_gpu true and with use_gpu false.

Without a device it says so and runs the same agreement check in numba-cuda's simulator on a
few attempts (the CUDA code path, on the CPU): correctness only, no speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent)
               if Path(p or ".").resolve() == Path(__file__).resolve().parent else p for p in sys.path]

import numpy as np  # noqa: E402

from bench.results import bench_database, machine, record  # noqa: E402

#: A validity decision may differ between targets only for an attempt with a receiver's SNR
#: this close (dB) to min_snr_db.
MARGIN_DB = 1e-6
CHUNK = 100_000


def compare(cpu, dev) -> dict:
    """Agreement of two AttemptBatch of the same attempts."""
    from heimdall_synth.kernel import layout as L
    out = {"attempts": len(cpu), "valid_cpu": int(cpu.valid.sum()),
           "valid_differs": int((cpu.valid != dev.valid).sum())}
    ints = [a for a in cpu.ARRAYS if getattr(cpu, a).dtype.kind != "f"]
    out["integer_arrays_equal"] = all(
        np.array_equal(getattr(cpu, a)[cpu.valid == dev.valid],
                       getattr(dev, a)[cpu.valid == dev.valid]) for a in ints)
    worst = 0.0
    for a in ("scalars", "rx"):
        x, y = getattr(cpu, a), getattr(dev, a)
        both = np.isfinite(x) & np.isfinite(y)
        rel = np.abs(x - y)[both] / np.maximum(np.abs(x[both]), 1e-300)
        worst = max(worst, float(rel.max(initial=0.0)))
    out["max_relative_difference"] = worst
    # A differing decision must be a near-threshold one: with the default filters (min_snr_db
    # 3, min_receivers 3, no GDOP or CRB limit) that is a receiver whose SNR (either target's)
    # lies within MARGIN_DB of min_snr_db, so that its detection may flip.
    differ = np.flatnonzero(cpu.valid != dev.valid)
    near = sum(bool(np.any(np.abs(np.concatenate([cpu.rx[i, :, L.R_SNR], dev.rx[i, :, L.R_SNR]])
                                  - 3.0) < MARGIN_DB)) for i in differ)
    out["differing_near_a_threshold"] = near
    return out


def on_device(attempts: int, samples: int, url: str) -> dict:
    from heimdall_synth.kernel import gpu
    from heimdall_synth.kernel.batch import pack_config, run_attempts
    from heimdall_synth.kernel.config import GenerationConfig
    cfg = GenerationConfig.from_dict({})
    inputs = pack_config(cfg, 1)
    run_attempts(cfg, 1, 0, 1000, inputs=inputs)  # compile
    gpu.run_attempts_gpu(cfg, 1, 0, 1000, inputs=inputs)
    t_cpu = t_dev = 0.0
    totals: dict = {}
    for start in range(0, attempts, CHUNK):
        n = min(CHUNK, attempts - start)
        t0 = time.perf_counter()
        cpu = run_attempts(cfg, 1, start, n, inputs=inputs)
        t_cpu += time.perf_counter() - t0
        t0 = time.perf_counter()
        dev = gpu.run_attempts_gpu(cfg, 1, start, n, inputs=inputs, threads_per_block=128)
        t_dev += time.perf_counter() - t0
        for key, value in compare(cpu, dev).items():  # over the chunks: worst, all, sum
            if key == "max_relative_difference":
                totals[key] = max(totals.get(key, 0.0), value)
            elif isinstance(value, bool):
                totals[key] = totals.get(key, True) and value
            else:
                totals[key] = totals.get(key, 0) + value
    jobs = {}
    for use_gpu in (True, False):
        jobs[use_gpu] = job_rate(url, samples, use_gpu)
    return {"device": gpu.device_text(gpu.device_info()), "cpu_attempts_s": attempts / t_cpu,
            "gpu_attempts_s": attempts / t_dev, "agreement": totals,
            "job_gpu_samples_s": jobs[True], "job_cpu_samples_s": jobs[False]}


def job_rate(url: str, samples: int, use_gpu: bool) -> float:
    from heimdall_synth.service.engine.loop import run_job
    from heimdall_synth.service.engine.request import GenerateRequest
    from heimdall_synth.service.storage import jobs
    from heimdall_synth.service.storage.database import connect
    with connect(url) as conn:
        made = jobs.create_job(conn, GenerateRequest.from_dict(
            {"name": f"gpu-bench-{use_gpu}-{time.time_ns()}", "num_samples": samples,
             "seed": 1, "use_gpu": use_gpu}))
    result = run_job(url, made["job_id"])
    assert result.status == "completed", result.message
    return result.samples_per_second


SIMULATED = """
import json
from heimdall_synth.kernel import gpu
from heimdall_synth.kernel.batch import run_attempts
import bench.gpu as b
cpu = run_attempts({}, 1, 0, 48)
dev = gpu.run_attempts_gpu({}, 1, 0, 48)
print(json.dumps(b.compare(cpu, dev)))
"""


def in_simulator() -> dict:
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", SIMULATED], cwd=root, capture_output=True,
                         text=True, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    from heimdall_synth.kernel.gpu import device_info
    info = device_info()
    if info is None or info["simulated"]:
        sim = in_simulator()
        print(f"no CUDA device here: the simulator's agreement over {sim['attempts']} attempts: "
              f"{sim}", flush=True)
        lines = [f"On {machine()}: no CUDA device, so no speed. numba-cuda's simulator ran the "
                 f"CUDA code path over {sim['attempts']} attempts of the default network "
                 f"({sim['valid_cpu']} valid): validity decisions differing "
                 f"{sim['valid_differs']}, integer outputs equal: "
                 f"{sim['integer_arrays_equal']}, largest relative difference of the "
                 f"floating-point outputs {sim['max_relative_difference']:.1e} (the "
                 "simulator's maths are the host's). The comparison over 1,000,000 attempts "
                 "and the speed figures need a device: `python bench/gpu.py --record` there."]
    else:
        with bench_database("heimdall-bench-gpu-") as url:
            from heimdall_synth.service.storage.database import connect
            from heimdall_synth.service.storage.migrations import upgrade
            with connect(url) as conn:
                upgrade(conn)
            r = on_device(args.attempts, args.samples, url)
        print(json.dumps(r, indent=1), flush=True)
        a = r["agreement"]
        lines = [f"On {machine()}, {r['device']}; default network.", "",
                 "| figure | value |", "|---|---|",
                 f"| attempt kernel, device | **{r['gpu_attempts_s']:,.0f} attempts/s** |",
                 f"| attempt kernel, CPU (all cores) | {r['cpu_attempts_s']:,.0f} attempts/s |",
                 f"| job of {args.samples:,} samples, use_gpu true | "
                 f"{r['job_gpu_samples_s']:,.0f} samples/s |",
                 f"| the same job, use_gpu false | {r['job_cpu_samples_s']:,.0f} samples/s |",
                 f"| attempts compared | {a['attempts']:,} |",
                 f"| validity decisions that differ (near a threshold) | "
                 f"{a['valid_differs']:,} ({a['differing_near_a_threshold']:,}) |",
                 f"| integer outputs equal | {a['integer_arrays_equal']} |",
                 f"| largest relative difference, floats | "
                 f"{a['max_relative_difference']:.1e} |"]
    if args.record:
        record("gpu", "GPU path (`python bench/gpu.py --record`)", lines)


if __name__ == "__main__":
    main()
