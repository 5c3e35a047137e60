"""The CUDA target in numba-cuda's simulator (NUMBA_ENABLE_CUDASIM=1, in a subprocess: the
setting must precede numba.cuda's import): the random numbers' CUDA twins draw exactly what the
CPU kernel functions draw, from the same source."""

from __future__ import annotations

import json

import numpy as np

from heimdall_synth.kernel import gpu
from tests.helpers import in_simulator

SCRIPT = """
import json, sys
import numpy as np
from heimdall_synth.kernel import gpu
assert gpu.simulated()
out = {}
for seed, start, stream, slot, sub in json.loads(sys.argv[1]):
    a = gpu.draws_gpu(seed, start, 300, stream, slot, sub)
    b = gpu.draws_cpu(seed, start, 300, stream, slot, sub)
    out[f"{seed}/{start}/{stream}/{slot}/{sub}"] = {
        k: [bool(np.array_equal(a[k], b[k])), int(np.count_nonzero(a[k]))] for k in a}
twins = gpu.rng_twins()
out["same_code"] = all(getattr(twins, f.py_func.__name__).py_func.__code__ is f.py_func.__code__
                       for f in gpu.RNG_FUNCTIONS)
print(json.dumps(out))
"""

CASES = [(7, 0, 3, 1, 0), (2**63 - 1, 10**12, 0, 0, 5), (123456789, 99, 9, 255, 63)]


def test_random_draws_on_the_cuda_target_equal_the_cpus():
    out = in_simulator(SCRIPT, json.dumps(CASES))
    assert out.pop("same_code") is True  # one source: the twins run the CPU functions' code
    assert len(out) == len(CASES)
    for case, draws in out.items():
        for name, (equal, nonzero) in draws.items():
            assert equal, (case, name)  # integer draws identical; in the simulator floats too
            assert nonzero > 250, (case, name)  # real draws, not an unwritten array


def test_without_a_device_jobs_stay_on_the_cpu():
    """This process has numba-cuda but neither the simulator nor a device: none is found, and
    the CPU's draws are the rng functions' own."""
    from heimdall_synth.kernel import rng
    assert not gpu.simulated() and gpu.device_info() is None
    draws = gpu.draws_cpu(7, 0, 5, 3, 1, 0)
    key = rng.slot_key(np.uint64(rng.attempt_key(np.uint64(7), np.uint64(4))), 3, 1)
    assert int(draws["bits"][4]) == int(rng.draw_bits(np.uint64(key), 0))
    assert len(set(draws["bits"].tolist())) == 5


ATTEMPTS_SCRIPT = """
import json, sys
import numpy as np
from heimdall_synth.kernel import gpu
from heimdall_synth.kernel.batch import run_attempts
from tests.helpers import jacksboro
assert gpu.simulated()
area = {"area_lat_min": 36.50, "area_lat_max": 36.68, "area_lon_min": -84.36,
        "area_lon_max": -84.13, "margin_deg": 0.02}
cases = {
    "default network": ({}, None, 7, 1000, 12),
    "random receivers on terrain": (dict(area, terrain="jacksboro", use_random_receivers=True,
                                         min_receivers_count=3, max_receivers_count=5),
                                    jacksboro(), 3, 0, 8),
    "fixed stations on terrain": (dict(margin_deg=0.02, terrain="jacksboro", receivers=[
        {"name": "a", "lat": 36.62, "lon": -84.20, "antenna_height_m": 10.0},
        {"name": "b", "lat": 36.55, "lon": -84.30},
        {"name": "c", "lat": 36.66, "lon": -84.15}]), jacksboro(), 4, 50, 8),
}
out = {}
for name, (config, grid, seed, start, count) in cases.items():
    cpu = run_attempts(config, seed, start, count, terrain=grid)
    dev = gpu.run_attempts_gpu(config, seed, start, count, terrain=grid)
    result = {"valid_count": int(cpu.valid.sum())}
    for array in cpu.ARRAYS:
        a, b = getattr(cpu, array), getattr(dev, array)
        if a.dtype.kind == "f":
            scale = np.where(np.isfinite(a), np.abs(a), 0.0) + 1e-300
            both = np.isfinite(a) & np.isfinite(b)
            result[array] = {
                "exact": bool(np.array_equal(a, b, equal_nan=True)),
                "same_finite": bool(np.array_equal(np.isfinite(a), np.isfinite(b))),
                "max_rel": float(np.max(np.abs(a - b)[both] / scale[both], initial=0.0))}
        else:
            result[array] = {"exact": bool(np.array_equal(a, b))}
    out[name] = result
print(json.dumps(out))
"""


def test_the_attempt_kernel_on_the_cuda_target_equals_the_cpus():
    """Model 2 (terrain profiles, loss maps, shadowing, fading, every filter) twinned for CUDA
    from the same source: integer outputs and validity identical, floats equal within 1e-12
    relative (the simulator's maths are the host's)."""
    out = in_simulator(ATTEMPTS_SCRIPT)
    assert len(out) == 3
    for case, arrays in out.items():
        assert arrays.pop("valid_count") > 0, case  # some attempts are valid: outputs to compare
        for name, check in arrays.items():
            if "max_rel" in check:
                assert check["same_finite"] and check["max_rel"] <= 1e-12, (case, name, check)
            else:
                assert check["exact"], (case, name)


LOOP_SCRIPT = """
import json, sys
from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.engine.request import GenerateRequest
from heimdall_synth.service.storage import jobs
from heimdall_synth.service.storage.database import connect
url = sys.argv[1]
out = {}
with connect(url) as conn:
    made = jobs.create_job(conn, GenerateRequest.from_dict(
        {"name": "on-gpu", "num_samples": 12, "seed": 21, "use_gpu": True, "batch_size": 16}))
    result = run_job(url, made["job_id"])
    out["status"], out["device"] = result.status, result.device
    out["job_device"] = jobs.get_job(conn, made["job_id"])["device"]
    out["dataset_id"] = str(made["dataset_id"])
print(json.dumps(out))
"""


def test_a_job_runs_its_attempts_on_the_cuda_target_and_expands_on_the_cpu(conn, db_url):
    """The generation loop end to end on the simulated device (use_gpu true, 12 samples), then
    an expansion on the CPU (8 more): the rows equal a CPU-only dataset's (in the simulator the maths are the
    host's, so equal means identical), and each job records its device."""
    from tests.helpers import expand, generate, row_digests
    out = in_simulator(LOOP_SCRIPT, db_url)
    assert out["status"] == "completed"
    assert out["device"] == out["job_device"] == "cuda: numba-cuda simulator"
    expanded = expand(conn, db_url, out["dataset_id"], 8, use_gpu=False)
    assert expanded.status == "completed" and expanded.device.startswith("cpu")
    cpu_id, _ = generate(conn, db_url, "on-cpu", 20, seed=21, use_gpu=False)
    assert row_digests(db_url, out["dataset_id"]) == row_digests(db_url, cpu_id)
    # the dataset names the devices that produced its samples
    from heimdall_synth.service.storage.datasets import get_dataset
    assert get_dataset(conn, out["dataset_id"])["devices"] == sorted(
        [out["device"], expanded.device])
    assert get_dataset(conn, cpu_id)["devices"] == [expanded.device]


SIGNALS_SCRIPT = """
import json
import numpy as np
from heimdall_synth.kernel import GenerationConfig, gpu, iq, iq_features, run_attempts
assert gpu.simulated()
cfg = GenerationConfig.from_dict({"num_chunks": 2})
batch = run_attempts(cfg, 5, 0, 100)
rows = np.flatnonzero(batch.valid)[:2]
fs, ms = 13_000.0, 6.0
signal = (cfg.num_chunks, fs, ms, cfg.bandwidth_hz, cfg.noise_floor_dbm)
x_cpu = iq.synthesize(batch, rows, 5, *signal)
x_dev = gpu.synthesize_gpu(batch, rows, 5, *signal)
x_bounded = gpu.synthesize_gpu(batch, rows, 5, *signal, memory_bytes=1)  # a launch a sample
n_rx = batch.n_receivers[rows]
f_cpu = iq_features.measure(x_cpu, n_rx, cfg.num_chunks, fs, cfg.bandwidth_hz)
f_dev = gpu.measure_gpu(x_dev, n_rx, cfg.num_chunks, fs, cfg.bandwidth_hz, memory_bytes=1)
print(json.dumps({
    "iq": gpu.iq_disagreement(x_cpu, x_dev), "iq_nonzero": int(np.count_nonzero(x_dev)),
    "iq_size": int(n_rx.sum()) * x_dev.shape[2],
    "bounded_identical": bool(np.array_equal(x_dev, x_bounded)),
    "features": gpu.float_disagreement(f_cpu, f_dev),
    "padding_nan": bool(np.isnan(f_dev[0, n_rx[0]:]).all()),
    "features_finite": int(np.isfinite(f_dev).sum()), "receivers": int(n_rx.sum())}))
"""


def test_the_signals_on_the_cuda_target_equal_the_cpus():
    """iq_raw synthesis and feature extraction twinned for CUDA (with kernel.fft's transforms
    in place of numpy.fft): the IQ and the features agree within the stated tolerances, and
    launches cut to bound device memory give the same IQ as one launch."""
    out = in_simulator(SIGNALS_SCRIPT)
    assert out["iq"] <= gpu.IQ_RTOL and out["features"] <= gpu.FLOAT_RTOL, out
    assert out["iq_nonzero"] == out["iq_size"] > 0  # every present receiver's IQ was written
    assert out["bounded_identical"] and out["padding_nan"], out
    assert out["features_finite"] == out["receivers"] * 16 * 4


IQ_SCRIPT = """
import json, sys
from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.engine.request import GenerateRequest
from heimdall_synth.service.storage import jobs
from heimdall_synth.service.storage.database import connect
url, out = sys.argv[1], {}
with connect(url) as conn:
    made = jobs.create_job(conn, GenerateRequest.from_dict(json.loads(sys.argv[2])))
    result = run_job(url, made["job_id"])
    out["status"], out["device"] = result.status, result.device
    out["dataset_id"] = str(made["dataset_id"])
print(json.dumps(out))
"""

IQ_JOB = {"dataset_type": "iq_raw", "iq_sample_rate_hz": 13_000, "iq_duration_ms": 10,
          "num_chunks": 2, "iq_storage": "postgres", "iq_format": "cf32", "seed": 31}


def iq_columns(conn, dataset_id):
    """Every iq_* feature column of the dataset's rows, as one float array."""
    from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS
    with conn.transaction():
        got = conn.execute(f"SELECT {', '.join(IQ_FEATURE_COLUMNS)} FROM "
                           "heimdall.measurement_features WHERE dataset_id = %s ORDER BY "
                           "sample_index", (dataset_id,)).fetchall()
    return np.array(got, np.float64)


def captures(conn, dataset_id):
    with conn.transaction():
        got = conn.execute("SELECT iq FROM heimdall.iq_captures WHERE dataset_id = %s ORDER BY "
                           "sample_index, receiver", (dataset_id,)).fetchall()
    return [np.frombuffer(row[0], "<f4").view(np.complex64) for row in got]


def test_an_iq_raw_job_runs_on_the_cuda_target_and_expands_on_the_cpu(conn, db_url):
    """An iq_raw job on the simulated device (use_gpu true: attempts, synthesis and features),
    expanded on the CPU: the attempts' columns equal a CPU-only dataset's exactly, the
    features (float4 columns) and the stored IQ within the stated tolerance."""
    from tests.helpers import expand, generate, row_digests
    out = in_simulator(IQ_SCRIPT, db_url, json.dumps(
        dict(IQ_JOB, name="iq-on-gpu", num_samples=2, use_gpu=True)))
    assert out["status"] == "completed" and out["device"] == "cuda: numba-cuda simulator"
    grown = expand(conn, db_url, out["dataset_id"], 1, use_gpu=False)
    assert grown.status == "completed" and grown.device.startswith("cpu")
    cpu_id, _ = generate(conn, db_url, "iq-on-cpu", 3, **dict(IQ_JOB, use_gpu=False))
    assert row_digests(db_url, out["dataset_id"]) == row_digests(db_url, cpu_id)
    dev, cpu = iq_columns(conn, out["dataset_id"]), iq_columns(conn, cpu_id)
    assert dev.shape == cpu.shape and np.isfinite(cpu).sum() > 0
    # float4 columns: the device's float64 features round to the same or the next float32
    assert np.array_equal(np.isnan(dev), np.isnan(cpu))
    assert np.allclose(dev, cpu, rtol=2.0 ** -22, atol=0.0, equal_nan=True)
    dev_iq, cpu_iq = captures(conn, out["dataset_id"]), captures(conn, cpu_id)
    assert len(dev_iq) == len(cpu_iq) > 0
    assert max(gpu.iq_disagreement(c[None], d[None]) for c, d in zip(cpu_iq, dev_iq)) <= \
        gpu.IQ_RTOL


SIMULATOR = {"NUMBA_ENABLE_CUDASIM": "1"}


def test_use_gpu_over_http_and_the_cli_where_there_is_a_device(db_url, tmp_path):
    """A server and the CLI on a machine with a (simulated) device: use_gpu true runs there,
    null chooses it (iq_raw too), false stays on the CPU; each job records its device."""
    from tests.helpers import cli_json
    from tests.http_client import ServerProcess
    server = ServerProcess(db_url, tmp_path / "server.log", env=SIMULATOR)
    try:
        api = server.client
        devices = {}
        for name, fields in {"true": {"use_gpu": True}, "null": {},
                             "false": {"use_gpu": False},
                             "iq": dict(IQ_JOB, iq_storage="regenerate")}.items():
            created = api.generate(name=f"http-{name}", num_samples=2, batch_size=16,
                                   **fields)
            job = api.wait(created["job_id"], timeout=300)
            assert job["status"] == "completed", job
            devices[name] = job["device"]
            dataset = api.get(f"/datasets/{created['dataset_id']}").json
            assert dataset["devices"] == [job["device"]]
    finally:
        server.terminate()
    simulated = "cuda: numba-cuda simulator"
    assert devices == {"true": simulated, "null": simulated,
                       "false": devices["false"], "iq": simulated}
    assert devices["false"].startswith("cpu")
    on_gpu = cli_json(db_url, "generate", "--name", "cli-gpu", "--num-samples", 2,
                      "--batch-size", 16, "--use-gpu", env=SIMULATOR, timeout=300)
    on_cpu = cli_json(db_url, "generate", "--name", "cli-cpu", "--num-samples", 2,
                      "--no-use-gpu", env=SIMULATOR, timeout=300)
    assert on_gpu["device"] == simulated and on_cpu["device"].startswith("cpu")


def test_use_gpu_true_over_http_and_the_cli_without_a_device(api, db_url):
    """No device here: true is a 422 / exit 2 naming use_gpu, and nothing changes."""
    from tests.helpers import cli, db_state
    before = db_state(db_url)
    for fields in ({}, {"dataset_type": "iq_raw"}):
        reply = api.post("/generate", {"name": "no-gpu", "num_samples": 2, "use_gpu": True,
                                       **fields})
        assert reply.status == 422, reply
        assert reply.json["error"] == "invalid_field" and reply.json["field"] == "use_gpu"
    res = cli(db_url, "generate", "--name", "no-gpu", "--num-samples", 2, "--use-gpu")
    assert res.returncode == 2 and "use_gpu" in res.stderr, res.stderr
    assert db_state(db_url) == before
