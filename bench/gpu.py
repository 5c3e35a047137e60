"""The GPU path against the CPU kernel on the same machine.

    python bench/gpu.py [--attempts 1000000] [--samples 200000] [--iq-samples 2000] [--record]

On a machine with a CUDA device (the gpu extra and numba-cuda[cu12]):
1. attempts/s of the attempt kernel on the device (``run_attempts_gpu``) and on the CPU
   (``run_attempts``, all cores) over --attempts attempts of the default network;
2. their agreement over those attempts (kernel.gpu's tolerances): integer outputs, validity
   decisions (how many differ, and whether each lies within THRESHOLD_MARGIN_DB of a
   threshold), and the largest scaled difference of the floating-point outputs;
3. iq_raw samples/s of signal synthesis and feature extraction on the device and on the CPU
   (default signal settings) over the first --iq-samples accepted samples, and their
   agreement (IQ and features);
4. the end-to-end rate of a --samples feature_based job and of an --iq-samples iq_raw job,
   each with use_gpu true and with use_gpu false.

Without a device it says so, and records correctness only: the simulator's agreement (the
CUDA code path, on the CPU, on a few attempts and two small captures), and the device's
signal code (kernel.fft's transforms in place of numpy.fft) compiled for the CPU at the
default signal settings. Under the simulator (NUMBA_ENABLE_CUDASIM=1) it runs the device
branch on small sizes as a dry run of the script, recording nothing.
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

CHUNK = 100_000
#: Signal settings small enough for the simulator's dry run (it runs device code as Python).
SIMULATOR_SIGNALS = {"iq_sample_rate_hz": 13_000.0, "iq_duration_ms": 10.0, "num_chunks": 2}


def compare(cpu, dev) -> dict:
    """Agreement of two AttemptBatch of the same attempts."""
    from heimdall_synth.kernel import gpu, layout as L
    out = {"attempts": len(cpu), "valid_cpu": int(cpu.valid.sum()),
           "valid_differs": int((cpu.valid != dev.valid).sum())}
    ints = [a for a in cpu.ARRAYS if getattr(cpu, a).dtype.kind != "f"]
    out["integer_arrays_equal"] = all(
        np.array_equal(getattr(cpu, a)[cpu.valid == dev.valid],
                       getattr(dev, a)[cpu.valid == dev.valid]) for a in ints)
    same = cpu.valid == dev.valid
    out["max_relative_difference"] = max(gpu.float_disagreement(getattr(cpu, a)[same],
                                                                getattr(dev, a)[same])
                                         for a in ("scalars", "rx"))
    # A differing decision must be a near-threshold one: with the default filters (min_snr_db
    # 3, min_receivers 3, no GDOP or CRB limit) that is a receiver whose SNR (either target's)
    # lies within THRESHOLD_MARGIN_DB of min_snr_db, so that its detection may flip.
    differ = np.flatnonzero(cpu.valid != dev.valid)
    snr = np.concatenate([cpu.rx[differ, :, L.R_SNR], dev.rx[differ, :, L.R_SNR]], axis=1)
    near = int(np.any(np.abs(snr - 3.0) < gpu.THRESHOLD_MARGIN_DB, axis=1).sum())
    out["differing_near_a_threshold"] = near
    return out


def on_device(attempts: int, samples: int, iq_samples: int, url: str, signals: dict) -> dict:
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
    out = {"device": gpu.device_text(gpu.device_info()), "cpu_attempts_s": attempts / t_cpu,
           "gpu_attempts_s": attempts / t_dev, "agreement": totals,
           "signals": signals_on_device(iq_samples, signals)}
    for use_gpu in (True, False):
        out[f"job_{use_gpu}"] = job_rate(url, {"num_samples": samples, "use_gpu": use_gpu})
        out[f"iq_job_{use_gpu}"] = job_rate(url, dict(signals, dataset_type="iq_raw",
                                                      num_samples=iq_samples, use_gpu=use_gpu))
    return out


def signals_on_device(count: int, signals: dict) -> dict:
    """iq_raw samples/s of synthesis and features on the device and the CPU over the first
    ``count`` accepted samples of the default network, and their agreement."""
    from heimdall_synth.kernel import gpu, iq, iq_features
    from heimdall_synth.kernel.batch import run_attempts
    from heimdall_synth.kernel.config import GenerationConfig
    cfg = GenerationConfig.from_dict(dict(signals, dataset_type="iq_raw"))
    batch = run_attempts(cfg, 1, 0, 2 * count + 100)
    rows = np.flatnonzero(batch.valid)[:count]
    args = (cfg.num_chunks, cfg.iq_sample_rate_hz, cfg.iq_duration_ms, cfg.bandwidth_hz,
            cfg.noise_floor_dbm)
    n_rx = batch.n_receivers[rows]
    measure = (cfg.num_chunks, cfg.iq_sample_rate_hz, cfg.bandwidth_hz)
    for target in ("cpu", "device"):  # compile both before timing
        x = (iq.synthesize if target == "cpu" else gpu.synthesize_gpu)(batch, rows[:1], 1,
                                                                       *args)
        (iq_features.measure if target == "cpu" else gpu.measure_gpu)(x, n_rx[:1], *measure)
    t0 = time.perf_counter()
    x_cpu = iq.synthesize(batch, rows, 1, *args)
    f_cpu = iq_features.measure(x_cpu, n_rx, *measure)
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    x_dev = gpu.synthesize_gpu(batch, rows, 1, *args)
    f_dev = gpu.measure_gpu(x_dev, n_rx, *measure)
    t_dev = time.perf_counter() - t0
    return {"samples": len(rows), "cpu_samples_s": len(rows) / t_cpu,
            "gpu_samples_s": len(rows) / t_dev,
            "iq_disagreement": gpu.iq_disagreement(x_cpu, x_dev),
            "iq_values_differing": int((x_cpu != x_dev).sum()),
            "iq_values": int(n_rx.sum()) * x_cpu.shape[2],
            "features_disagreement": gpu.float_disagreement(f_cpu, f_dev)}


def job_rate(url: str, fields: dict) -> float:
    from heimdall_synth.service.engine.loop import run_job
    from heimdall_synth.service.engine.request import GenerateRequest
    from heimdall_synth.service.storage import jobs
    from heimdall_synth.service.storage.database import connect
    with connect(url) as conn:
        made = jobs.create_job(conn, GenerateRequest.from_dict(
            dict(fields, name=f"gpu-bench-{time.time_ns()}", seed=1)))
    result = run_job(url, made["job_id"])
    assert result.status == "completed", result.message
    return result.samples_per_second


SIMULATED = """
import json
import numpy as np
from heimdall_synth.kernel import GenerationConfig, gpu, iq, iq_features
from heimdall_synth.kernel.batch import run_attempts
import bench.gpu as b
cpu = run_attempts({}, 1, 0, 48)
dev = gpu.run_attempts_gpu({}, 1, 0, 48)
out = b.compare(cpu, dev)
cfg = GenerationConfig.from_dict({"num_chunks": 2})
rows = np.flatnonzero(cpu.valid)[:2]
signal = (2, 13_000.0, 10.0, cfg.bandwidth_hz, cfg.noise_floor_dbm)
x_cpu, x_dev = iq.synthesize(cpu, rows, 1, *signal), gpu.synthesize_gpu(cpu, rows, 1, *signal)
n_rx = cpu.n_receivers[rows]
out["iq_disagreement"] = gpu.iq_disagreement(x_cpu, x_dev)
out["features_disagreement"] = gpu.float_disagreement(
    iq_features.measure(x_cpu, n_rx, 2, 13_000.0, cfg.bandwidth_hz),
    gpu.measure_gpu(x_dev, n_rx, 2, 13_000.0, cfg.bandwidth_hz))
print(json.dumps(out))
"""


def in_simulator() -> dict:
    root = Path(__file__).resolve().parent.parent
    res = subprocess.run([sys.executable, "-c", SIMULATED], cwd=root, capture_output=True,
                         text=True, env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def device_code_on_the_cpu(count: int) -> dict:
    """The device's signal code (the allocation-free cores with kernel.fft's transforms,
    ``device_twins(on_cpu=True)``) at the default signal settings against the CPU's, over
    ``count`` accepted samples: what the transforms alone change."""
    from heimdall_synth.kernel import fft, gpu, iq, iq_features as F
    from heimdall_synth.kernel.batch import run_attempts
    from heimdall_synth.kernel.config import GenerationConfig
    cfg = GenerationConfig.from_dict({"dataset_type": "iq_raw"})
    batch = run_attempts(cfg, 1, 0, 2 * count + 100)
    rows = np.flatnonzero(batch.valid)[:count]
    fs, windows = cfg.iq_sample_rate_hz, cfg.num_chunks
    x_cpu = iq.synthesize(batch, rows, 1, windows, fs, cfg.iq_duration_ms, cfg.bandwidth_hz,
                          cfg.noise_floor_dbm)
    f_cpu = F.measure(x_cpu, batch.n_receivers[rows], windows, fs, cfg.bandwidth_hz)
    twins = gpu.device_twins([iq.synthesize_core, F.capture_features_core],
                             gpu.signal_replacements(), on_cpu=True)
    capture = x_cpu.shape[2]
    lead_in = iq.lead_in_samples(fs)
    n = lead_in + capture
    longest, lengths = gpu.measured_lengths(capture, windows)
    plans_i, plans_t = fft.fft_plans([n, *lengths])
    work = np.zeros(fft.work_size(plans_i), np.complex128)
    x_dev, f_dev = np.zeros_like(x_cpu), np.full_like(f_cpu, np.nan)
    scratch = np.zeros((iq.SYNTHESIS_ROWS, n), np.complex128)
    real, cplx = np.zeros((F.REAL_ROWS, longest + 1)), np.zeros((F.COMPLEX_ROWS, longest + 1),
                                                                  np.complex128)
    for k, r in enumerate(rows):
        twins["synthesize_core"](np.uint64(1), np.uint64(batch.attempt_index[r]), batch.rx[r],
                                 batch.n_receivers[r], windows, True, fs, capture,
                                 cfg.bandwidth_hz, cfg.noise_floor_dbm, lead_in, x_dev[k],
                                 scratch, np.zeros(max(n, windows)), plans_i, plans_t, work)
        for j in range(batch.n_receivers[r]):
            twins["capture_features_core"](x_dev[k, j], windows, fs, cfg.bandwidth_hz,
                                           f_dev[k, j], np.zeros((windows, F.N_FEATURES)),
                                           real, cplx, plans_i, plans_t, work)
    return {"samples": len(rows), "iq_disagreement": gpu.iq_disagreement(x_cpu, x_dev),
            "iq_values_differing": int((x_cpu != x_dev).sum()), "iq_values": x_cpu.size,
            "features_disagreement": gpu.float_disagreement(f_cpu, f_dev)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=1_000_000)
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--iq-samples", type=int, default=2_000)
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()
    from heimdall_synth.kernel.gpu import device_info
    info = device_info()
    if info is None:
        sim = in_simulator()
        print(f"no CUDA device here: the simulator's agreement: {sim}", flush=True)
        twin = device_code_on_the_cpu(50)
        print(f"the device's signal code on the CPU: {twin}", flush=True)
        lines = [
            f"On {machine()}: no CUDA device, so no speed (and no device maths library).", "",
            f"* numba-cuda's simulator ran the CUDA code path over {sim['attempts']} attempts "
            f"of the default network ({sim['valid_cpu']} valid): validity decisions differing "
            f"{sim['valid_differs']}, integer outputs equal: {sim['integer_arrays_equal']}, "
            f"largest scaled difference of the floating-point outputs "
            f"{sim['max_relative_difference']:.1e}; two of their samples' signals at 13 kHz x "
            f"10 ms: IQ {sim['iq_disagreement']:.1e}, features "
            f"{sim['features_disagreement']:.1e} (the simulator's maths are the host's).",
            f"* The device's signal code compiled for the CPU (its transforms are kernel.fft's, "
            f"not numpy.fft's) at the default signal settings, {twin['samples']} samples: "
            f"{twin['iq_values_differing']:,} of {twin['iq_values']:,} complex64 IQ values "
            f"differ (IQ {twin['iq_disagreement']:.1e} of the peak), features "
            f"{twin['features_disagreement']:.1e}.",
            "* Tolerances stated (kernel/gpu.py): floats 1e-9 scaled, IQ 2^-22 of the peak, "
            "validity within 1e-6 dB of a threshold. The comparison over 1,000,000 attempts "
            "and the speed figures need a device: `python bench/gpu.py --record` there."]
    else:
        signals = SIMULATOR_SIGNALS if info["simulated"] else {}
        with bench_database("heimdall-bench-gpu-") as url:
            from heimdall_synth.service.storage.database import connect
            from heimdall_synth.service.storage.migrations import upgrade
            with connect(url) as conn:
                upgrade(conn)
            r = on_device(args.attempts, args.samples, args.iq_samples, url, signals)
        print(json.dumps(r, indent=1), flush=True)
        a, g = r["agreement"], r["signals"]
        lines = [f"On {machine()}, {r['device']}; default network.", "",
                 "| figure | value |", "|---|---|",
                 f"| attempt kernel, device | **{r['gpu_attempts_s']:,.0f} attempts/s** |",
                 f"| attempt kernel, CPU (all cores) | {r['cpu_attempts_s']:,.0f} attempts/s |",
                 f"| iq_raw signals, device | **{g['gpu_samples_s']:,.1f} samples/s** |",
                 f"| iq_raw signals, CPU (all cores) | {g['cpu_samples_s']:,.1f} samples/s |",
                 f"| job of {args.samples:,} samples, use_gpu true | "
                 f"{r['job_True']:,.0f} samples/s |",
                 f"| the same job, use_gpu false | {r['job_False']:,.0f} samples/s |",
                 f"| iq_raw job of {args.iq_samples:,} samples, use_gpu true | "
                 f"{r['iq_job_True']:,.1f} samples/s |",
                 f"| the same job, use_gpu false | {r['iq_job_False']:,.1f} samples/s |",
                 f"| attempts compared | {a['attempts']:,} |",
                 f"| validity decisions that differ (near a threshold) | "
                 f"{a['valid_differs']:,} ({a['differing_near_a_threshold']:,}) |",
                 f"| integer outputs equal | {a['integer_arrays_equal']} |",
                 f"| largest scaled difference, floats (tolerance 1e-9) | "
                 f"{a['max_relative_difference']:.1e} |",
                 f"| IQ values differing, of {g['iq_values']:,} | "
                 f"{g['iq_values_differing']:,} (largest {g['iq_disagreement']:.1e} of the "
                 "peak; tolerance 2.4e-7) |",
                 f"| largest scaled difference, features (tolerance 1e-9) | "
                 f"{g['features_disagreement']:.1e} |"]
        if info["simulated"]:
            print("simulator: a dry run of the device branch, nothing recorded")
            return
    if args.record:
        record("gpu", "GPU path (`python bench/gpu.py --record`)", lines)


if __name__ == "__main__":
    main()
