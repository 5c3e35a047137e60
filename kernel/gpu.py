"""The CUDA target: the kernel's Numba functions compiled a second time, as CUDA device
functions, from the same source (the ``gpu`` extra: numba-cuda).

A kernel function is written once, as an ``njit`` function on scalars and arrays.
``device_twins`` makes its CUDA twin: a function object sharing the CPU function's code object,
whose global names are rebound so that its calls to other kernel functions reach their twins,
compiled with ``numba.cuda.jit(device=True)``. The physics and the random numbers have ONE
source for both targets, so a twin cannot drift from its CPU function; what may differ is the
floating-point maths library of the device.

With ``NUMBA_ENABLE_CUDASIM=1`` numba-cuda's simulator runs twins and kernels on the CPU, as
Python (slowly: keep grids small); CI tests the CUDA path that way. numba.cuda is imported on
first use, so the CPU path never needs the extra.

What runs there: the counter-based random numbers (``draws_kernel``), the attempt kernel
(``run_attempts_gpu``: ``attempt.attempt_core`` and all it calls) and the iq_raw signals
(``synthesize_gpu``, ``measure_gpu``: ``iq.synthesize_core`` and
``iq_features.capture_features_core``), whose transforms are ``kernel.fft``'s on the device
(``signal_replacements``). The tolerances below state how far the device may differ.
"""

from __future__ import annotations

import functools
import math
import os
import types
import warnings
import weakref
from contextlib import contextmanager

import numpy as np

from . import rng
from .jit import njit

#: The random-number functions, in the order they call each other (callees first).
RNG_FUNCTIONS = (rng.mix64, rng.attempt_key, rng.slot_key, rng.draw_bits, rng.uniform,
                 rng.exponential_retry, rng.exponential, rng._signed53, rng.normal_retry,
                 rng.normal)


#: The agreement of the device with the CPU (docs/GPU.md). Floating-point outputs (the
#: attempts' and the features measured from the IQ): |device - cpu| <= FLOAT_RTOL x
#: max(1, |cpu|). The IQ (complex64): |device - cpu| <= IQ_RTOL x the capture's largest
#: |cpu| (two float32 ulps at the peak). Validity decisions: identical, except attempts with
#: a receiver's SNR within THRESHOLD_MARGIN_DB of min_snr_db (counted by bench/gpu.py).
FLOAT_RTOL = 1e-9
IQ_RTOL = 2.0 ** -22
THRESHOLD_MARGIN_DB = 1e-6


def float_disagreement(cpu, device) -> float:
    """max |device - cpu| / max(1, |cpu|) over the finite pairs (0 when none); infinite when
    the two differ in which values are finite (NaN padding, infinities)."""
    cpu, device = np.asarray(cpu, np.float64), np.asarray(device, np.float64)
    if not np.array_equal(np.isfinite(cpu), np.isfinite(device)):
        return math.inf
    both = np.isfinite(cpu)
    scale = np.maximum(1.0, np.abs(cpu[both]))
    return float(np.max(np.abs(device[both] - cpu[both]) / scale, initial=0.0))


def iq_disagreement(cpu, device) -> float:
    """max over captures (the last axis) of max |device - cpu| / max |cpu| (0 for silence)."""
    cpu, device = np.asarray(cpu, np.complex128), np.asarray(device, np.complex128)
    peak = np.abs(cpu).max(axis=-1, keepdims=True)
    diff = np.abs(device - cpu).max(axis=-1, keepdims=True)
    return float(np.max(np.where(peak > 0, diff / np.where(peak > 0, peak, 1.0), diff),
                        initial=0.0))


#: numba.cuda once imported (``cuda_module``). Kernels reach the CUDA API through this module
#: global: the simulator swaps globals that hold numba.cuda for its own stand-in.
cuda_api = None


def cuda_module():
    """numba.cuda, or ImportError naming the extra."""
    global cuda_api
    if cuda_api is None:
        try:
            from numba import cuda as numba_cuda
            numba_cuda.jit  # noqa: B018 - numba without numba-cuda has a stub module
        except (ImportError, AttributeError):
            raise ImportError("the CUDA target needs numba-cuda: pip install "
                              "'heimdall-synth[gpu]'") from None
        cuda_api = numba_cuda
    return cuda_api


def simulated() -> bool:
    """True when numba-cuda's simulator stands in for a device (NUMBA_ENABLE_CUDASIM=1)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "") not in ("", "0")


@contextmanager
def quiet_wraparound():
    """Around a launch: the simulator runs kernels as Python on NumPy scalars, which warn where
    64-bit words wrap (the random numbers' intended arithmetic). Its threads do not inherit
    np.errstate, so the warnings are filtered for the process while the launch runs."""
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore",
                                                divide="ignore"):
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        yield


@functools.cache
def device_info() -> dict | None:
    """The CUDA device jobs can use: {"name", "memory_mib", "driver", "simulated"}; None when
    there is none (no numba-cuda, no driver or no device). The simulator counts as a device
    (it runs the CUDA code path), named as such. Asked once per process."""
    try:
        numba_cuda = cuda_module()
        if not numba_cuda.is_available():
            return None
        if simulated():
            return {"name": "numba-cuda simulator", "memory_mib": None, "driver": None,
                    "simulated": True}
        device = numba_cuda.get_current_device()
        _, total = numba_cuda.current_context().get_memory_info()
        name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
        from numba.cuda.cudadrv.driver import driver
        version = driver.get_version()
        return {"name": name, "memory_mib": int(total) // 2**20,
                "driver": ".".join(str(v) for v in version), "simulated": False}
    except Exception:  # noqa: BLE001 - any failure to reach a device means: none
        return None


def device_text(info: dict) -> str:
    """A job's ``device`` for a CUDA device: 'cuda: NAME (MEM MiB, driver V)'."""
    if info["simulated"]:
        return f"cuda: {info['name']}"
    return f"cuda: {info['name']} ({info['memory_mib']:,} MiB, driver {info['driver']})"


def reachable(functions, replace=None) -> list:
    """``functions`` (njit dispatchers) and every njit function they call through a global
    name, callees first: what a device twin of them needs twinned too. ``replace``
    {dispatcher: dispatcher}: functions whose device twin is another function's (kernel.dft's
    transforms are kernel.fft's on the device)."""
    from numba.core.registry import CPUDispatcher
    replace = replace or {}
    order, seen = [], set()

    def visit(f):
        f = replace.get(f, f)
        if id(f) in seen:
            return
        seen.add(id(f))
        code = f.py_func
        for name in code.__code__.co_names:
            callee = code.__globals__.get(name)
            if isinstance(callee, CPUDispatcher):
                visit(callee)
        order.append(f)

    for f in functions:
        visit(f)
    return order


def device_twins(functions, replace=None, on_cpu: bool = False) -> dict:
    """{name: CUDA device function} for ``njit`` functions and all they call (``reachable``):
    each twin runs the same code object with its globals (a copy of its module's) rebound to
    the twins; a function in ``replace`` is bound to its replacement's twin. Two different
    functions of one name are refused (the twins are named by their functions).

    ``on_cpu``: the twins compiled by Numba for the CPU instead, so the device's code path
    (the allocation-free cores, kernel.fft's transforms) runs at full size and speed in tests
    and benchmarks; only the device's maths library is not in it."""
    import numba
    compile_twin = numba.njit if on_cpu else cuda_module().jit(device=True)
    replace = replace or {}
    functions = reachable(functions, replace)
    names = [f.py_func.__name__ for f in functions]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"kernel functions of one name in several modules: {clash}")
    twins, namespaces = {}, []
    by_function = {}  # id(CPU dispatcher) -> its twin
    for f in functions:
        code = f.py_func
        namespace = dict(code.__globals__)
        plain = types.FunctionType(code.__code__, namespace, code.__name__, code.__defaults__,
                                   code.__closure__)
        twins[code.__name__] = by_function[id(f)] = compile_twin(plain)
        namespaces.append(namespace)
    for original, replacement in replace.items():
        if id(replacement) in by_function:
            by_function[id(original)] = by_function[id(replacement)]
    for namespace in namespaces:  # calls inside a twin reach the other twins
        for name, value in list(namespace.items()):
            if id(value) in by_function:
                namespace[name] = by_function[id(value)]
    return twins


def signal_replacements() -> dict:
    """The signals' transforms on the device: kernel.fft's planned ones (kernel.dft)."""
    from . import dft, fft
    return {dft.dft: fft.fft_forward, dft.idft: fft.fft_inverse}


@functools.cache
def rng_twins() -> types.SimpleNamespace:
    return types.SimpleNamespace(**device_twins(RNG_FUNCTIONS))


@functools.cache
def draws_kernel():
    """A CUDA kernel: for attempts start .. start + n - 1 (one thread each) and the draw
    (stream, slot, sub), the raw 64-bit draw, a uniform, a normal and an exponential, written
    to row i of ``bits``, ``uniform``, ``normal``, ``exponential``. The CPU computes the same
    with ``draws_cpu``."""
    t = rng_twins()
    # the twins as plain closure variables: device code calls dispatchers, not attributes
    attempt_key, slot_key, draw_bits = t.attempt_key, t.slot_key, t.draw_bits
    uniform_draw, normal_draw, exponential_draw = t.uniform, t.normal, t.exponential

    @cuda_module().jit
    def draws(seed, start, stream, slot, sub, bits, uniform, normal, exponential):
        i = cuda_api.grid(1)
        if i < bits.shape[0]:
            skey = slot_key(attempt_key(seed, start + np.uint64(i)), stream, slot)
            bits[i] = draw_bits(skey, sub)
            uniform[i] = uniform_draw(skey, sub)
            normal[i] = normal_draw(skey, sub)
            exponential[i] = exponential_draw(skey, sub)

    return draws


def draws_gpu(seed: int, start: int, n: int, stream: int, slot: int, sub: int,
              threads_per_block: int = 64) -> dict:
    """``draws_kernel`` over n attempts: {"bits", "uniform", "normal", "exponential"}."""
    out = {"bits": np.zeros(n, np.uint64), "uniform": np.zeros(n), "normal": np.zeros(n),
           "exponential": np.zeros(n)}
    blocks = -(-n // threads_per_block)
    with quiet_wraparound():
        draws_kernel()[blocks, threads_per_block](
            np.uint64(seed), np.uint64(start), stream, slot, sub, out["bits"], out["uniform"],
            out["normal"], out["exponential"])
    return out


def draws_cpu(seed: int, start: int, n: int, stream: int, slot: int, sub: int) -> dict:
    """The same draws by the CPU kernel functions."""
    bits, uniform, normal, exponential = _draws_cpu(np.uint64(seed), np.uint64(start), n,
                                                     stream, slot, sub)
    return {"bits": bits, "uniform": uniform, "normal": normal, "exponential": exponential}


@njit
def _draws_cpu(seed, start, n, stream, slot, sub):
    bits, uniform = np.zeros(n, np.uint64), np.zeros(n)
    normal, exponential = np.zeros(n), np.zeros(n)
    for i in range(n):
        skey = rng.slot_key(rng.attempt_key(seed, start + np.uint64(i)), stream, slot)
        bits[i] = rng.draw_bits(skey, sub)
        uniform[i] = rng.uniform(skey, sub)
        normal[i] = rng.normal(skey, sub)
        exponential[i] = rng.exponential(skey, sub)
    return bits, uniform, normal, exponential


# ----------------------------------------------------------------------------- the attempts

@functools.cache
def attempts_kernel():
    """A CUDA kernel running ``attempt.attempt_core`` (and everything it calls, twinned) for
    attempts start .. start + n - 1, one thread each, row i of the outputs and of the
    per-attempt scratch workspaces."""
    from . import attempt
    core = device_twins([attempt.attempt_core])["attempt_core"]

    @cuda_module().jit
    def attempts(seed, start, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf, env_tab, kx,
                 ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo, dist_loss, dist_v,
                 valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf, rx_id, present, rx_ant,
                 off_grid, rxa, power_db, g, cos_t, sin_t):
        i = cuda_api.grid(1)
        if i < valid.shape[0]:
            core(seed, start + i, i, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf,
                 env_tab, kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo,
                 dist_loss, dist_v, valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf, rx_id,
                 present, rx_ant, off_grid, rxa[i], power_db[i], g[i], cos_t[i], sin_t[i])

    return attempts


#: The job's input tables on the device, by id(KernelInputs) (dropped with the inputs): a
#: job's chunks reuse them instead of sending the tables (terrain tiles, loss maps) each time.
_RESIDENT: dict = {}


def resident(inputs) -> tuple:
    """``inputs.arrays()`` as device arrays, sent once per KernelInputs."""
    key = id(inputs)
    if key not in _RESIDENT:
        numba_cuda = cuda_module()
        _RESIDENT[key] = tuple(numba_cuda.to_device(np.ascontiguousarray(a))
                               for a in inputs.arrays())
        weakref.finalize(inputs, _RESIDENT.pop, key, None)
    return _RESIDENT[key]


def run_attempts_gpu(config, seed: int, start: int, count: int, terrain=None,
                     inputs=None, out=None, threads_per_block: int = 64):
    """``kernel.batch.run_attempts`` on the CUDA target: the same ``AttemptBatch`` (the
    simulator, or a device, computes it), with the same ``inputs`` and ``out`` reuse. The
    inputs stay on the device between calls (``resident``); the workspace is count rows. A
    link leaving the terrain's grid raises TerrainError as on the CPU."""
    from . import attempt as A
    from .batch import AttemptBatch, check_range, pack_config
    from .config import GenerationConfig

    cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
    check_range(seed, start, count)
    k = inputs or pack_config(cfg, seed, terrain)
    out = AttemptBatch.empty(count, k.max_receivers) if out is None else out.head(count)
    out.attempt_index[:] = np.arange(start, start + count, dtype=np.int64)
    numba_cuda = cuda_module()
    results = (out.valid, out.reject_reason, out.n_receivers, out.n_detected, out.tx_antenna,
               out.tx_environment, out.scalars, out.rx, out.rx_id, out.signal_present,
               out.rx_antenna, np.zeros(count, np.bool_))
    # sent, not just allocated: what the kernel leaves unwritten reads as on the CPU
    on_device = [numba_cuda.to_device(r) for r in results]
    workspace = (numba_cuda.device_array((count, k.max_receivers, A.N_ST)),
                 numba_cuda.device_array((count, int(k.ip[A.IP_CHUNKS]))),
                 numba_cuda.device_array((count, k.cos_bt.shape[1])),
                 numba_cuda.device_array((count, k.kx.shape[0])),
                 numba_cuda.device_array((count, k.kx.shape[0])))
    blocks = max(1, -(-count // threads_per_block))
    with quiet_wraparound():
        attempts_kernel()[blocks, threads_per_block](
            np.uint64(seed), np.int64(start), *resident(k), *on_device, *workspace)
    for host, device in zip(results, on_device):
        device.copy_to_host(host)
    off_grid = results[-1]
    if off_grid.any():
        from .terrain import TerrainError
        raise TerrainError(f"attempt {int(start + np.flatnonzero(off_grid)[0])}: a link "
                           "leaves the terrain's grid")
    return out


# ---------------------------------------------------------------------------- the signals

#: Device memory a signal launch's scratch and IQ may take (bytes): the samples of a call
#: are cut into launches of at most this much, so memory on the device stays bounded.
SIGNAL_MEMORY_BYTES = 2 * 2**30


@functools.cache
def synthesis_kernel():
    """A CUDA kernel running ``iq.synthesize_core`` (twinned, with kernel.fft's transforms)
    for sample i of the launch: one thread per sample, its receivers in turn."""
    from . import iq
    core = device_twins([iq.synthesize_core], signal_replacements())["synthesize_core"]

    @cuda_module().jit
    def synthesize(seed, attempts, rx, n_rx, chunks, fading_on, fs, capture, bandwidth_hz,
                   noise_dbm, lead_in, out, scratch, real_scratch, plans_i, plans_t, work):
        i = cuda_api.grid(1)
        if i < attempts.shape[0]:
            core(seed, attempts[i], rx[i], n_rx[i], chunks, fading_on, fs, capture,
                 bandwidth_hz, noise_dbm, lead_in, out[i], scratch[i], real_scratch[i],
                 plans_i, plans_t, work[i])

    return synthesize


@functools.cache
def features_kernel():
    """A CUDA kernel running ``iq_features.capture_features_core`` (twinned, with kernel.fft's
    transforms): one thread per (sample, receiver slot), NaN in padding slots."""
    from . import iq_features
    core = device_twins([iq_features.capture_features_core],
                        signal_replacements())["capture_features_core"]

    @cuda_module().jit
    def features(x, n_rx, windows, fs, bandwidth_hz, out, values, real, cplx, plans_i,
                 plans_t, work):
        t = cuda_api.grid(1)
        slots = x.shape[1]
        if t < x.shape[0] * slots:
            k = t // slots
            j = t - k * slots
            if j < n_rx[k]:
                core(x[k, j], windows, fs, bandwidth_hz, out[k, j], values[t], real[t],
                     cplx[t], plans_i, plans_t, work[t])
            else:
                for a in range(out.shape[2]):
                    for b in range(out.shape[3]):
                        out[k, j, a, b] = math.nan

    return features


def launches(total: int, per_item_bytes: int, budget: int = 0) -> int:
    """Items per launch so that ``per_item_bytes`` each stay within the budget (at least 1)."""
    return max(1, min(total, (budget or SIGNAL_MEMORY_BYTES) // max(per_item_bytes, 1)))


def synthesize_gpu(batch, rows, seed: int, chunks: int, sample_rate_hz: float,
                   duration_ms: float, bandwidth_hz: float, noise_floor_dbm: float,
                   fading: bool = True, threads_per_block: int = 32,
                   memory_bytes: int = 0) -> np.ndarray:
    """``iq.synthesize`` on the CUDA target: the same array (the device's rounding aside)."""
    from . import fft, iq
    rows = np.asarray(rows, dtype=np.int64)
    if not batch.valid[rows].all():
        raise ValueError("IQ is synthesized for accepted samples only")
    capture = int(round(sample_rate_hz * duration_ms / 1000.0))
    lead_in = iq.lead_in_samples(sample_rate_hz)
    n = lead_in + capture
    slots = batch.rx.shape[1]
    out = np.zeros((len(rows), slots, capture), np.complex64)
    if not len(rows):
        return out
    numba_cuda = cuda_module()
    plans_i, plans_t = fft.fft_plans([n])
    work = fft.work_size(plans_i)
    per_sample = (16 * (iq.SYNTHESIS_ROWS * n + work) + 8 * max(n, chunks)
                  + 8 * slots * capture)
    step = launches(len(rows), per_sample, memory_bytes)
    plans = numba_cuda.to_device(plans_i), numba_cuda.to_device(plans_t)
    scratch = numba_cuda.device_array((step, iq.SYNTHESIS_ROWS, n), np.complex128)
    real_scratch = numba_cuda.device_array((step, max(n, chunks)))
    work_rows = numba_cuda.device_array((step, max(work, 1)), np.complex128)
    for first in range(0, len(rows), step):
        part = rows[first:first + step]
        iq_part = numba_cuda.to_device(out[first:first + len(part)])
        blocks = -(-len(part) // threads_per_block)
        with quiet_wraparound():
            synthesis_kernel()[blocks, threads_per_block](
                np.uint64(seed), batch.attempt_index[part].astype(np.uint64),
                np.ascontiguousarray(batch.rx[part]), batch.n_receivers[part].astype(np.int64),
                int(chunks), bool(fading), float(sample_rate_hz), capture, float(bandwidth_hz),
                float(noise_floor_dbm), lead_in, iq_part, scratch, real_scratch, *plans,
                work_rows)
        out[first:first + len(part)] = iq_part.copy_to_host()
    return out


def measured_lengths(capture: int, windows: int) -> tuple[int, list[int]]:
    """(the longest measurement window, every transform length the features of a capture
    split into ``windows`` take): the windows (the last takes the remainder) and their
    Welch segments."""
    from .iq_features import WELCH_SEGMENT
    per = capture // windows
    longest = capture - (windows - 1) * per
    return longest, sorted({per, longest, min(WELCH_SEGMENT, per),
                            min(WELCH_SEGMENT, longest)})


def measure_gpu(x, n_rx, windows: int, sample_rate_hz: float, bandwidth_hz: float,
                threads_per_block: int = 32, memory_bytes: int = 0) -> np.ndarray:
    """``iq_features.measure`` on the CUDA target: (samples, receivers, FEATURES, AGGREGATES)."""
    from . import fft, iq_features as F
    from .defaults import IQ_AGGREGATES, IQ_FEATURES
    samples, slots, n = x.shape
    out = np.empty((samples, slots, len(IQ_FEATURES), len(IQ_AGGREGATES)))
    if not samples:
        return out
    numba_cuda = cuda_module()
    longest, lengths = measured_lengths(n, windows)
    plans_i, plans_t = fft.fft_plans(lengths)
    work = fft.work_size(plans_i)
    per_slot = (8 * (windows * F.N_FEATURES + F.REAL_ROWS * (longest + 1))
                + 16 * (F.COMPLEX_ROWS * (longest + 1) + work) + 8 * n + out[0, 0].nbytes)
    step = launches(samples, per_slot * slots, memory_bytes)
    threads = step * slots
    plans = numba_cuda.to_device(plans_i), numba_cuda.to_device(plans_t)
    values = numba_cuda.device_array((threads, windows, F.N_FEATURES))
    real = numba_cuda.device_array((threads, F.REAL_ROWS, longest + 1))
    cplx = numba_cuda.device_array((threads, F.COMPLEX_ROWS, longest + 1), np.complex128)
    work_rows = numba_cuda.device_array((threads, max(work, 1)), np.complex128)
    counts = np.asarray(n_rx, np.int64)
    for first in range(0, samples, step):
        last = min(samples, first + step)
        part = numba_cuda.device_array((last - first,) + out.shape[1:])
        blocks = -(-((last - first) * slots) // threads_per_block)
        with quiet_wraparound():
            features_kernel()[blocks, threads_per_block](
                np.ascontiguousarray(x[first:last]), counts[first:last], int(windows),
                float(sample_rate_hz), float(bandwidth_hz), part, values, real, cplx, *plans,
                work_rows)
        out[first:last] = part.copy_to_host()
    return out
