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

What runs there: the counter-based random numbers (``draws_kernel``) and the attempt kernel
(``run_attempts_gpu``: ``attempt.attempt_core`` and all it calls). The iq_raw signals
(synthesis and features) still run on the CPU: they use numpy.fft inside Numba (rocket-fft),
which has no device twin yet.
"""

from __future__ import annotations

import functools
import os
import types
import warnings
from contextlib import contextmanager

import numpy as np

from . import rng
from .jit import njit

#: The random-number functions, in the order they call each other (callees first).
RNG_FUNCTIONS = (rng.mix64, rng.attempt_key, rng.slot_key, rng.draw_bits, rng.uniform,
                 rng.exponential_retry, rng.exponential, rng._signed53, rng.normal_retry,
                 rng.normal)


#: Why use_gpu true is refused for iq_raw (the request, and a job queued before that check).
IQ_ON_CPU_ONLY = ("true, and iq_raw runs on the CPU only: its signal synthesis has no CUDA "
                  "path yet; send null or false")

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


def reachable(functions) -> list:
    """``functions`` (njit dispatchers) and every njit function they call through a global
    name, callees first: what a device twin of them needs twinned too."""
    from numba.core.registry import CPUDispatcher
    order, seen = [], set()

    def visit(f):
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


def device_twins(functions) -> dict:
    """{name: CUDA device function} for ``njit`` functions and all they call (``reachable``):
    each twin runs the same code object with its globals (a copy of its module's) rebound to
    the twins. Two different functions of one name are refused (the rebinding is by name)."""
    numba_cuda = cuda_module()
    functions = reachable(functions)
    names = [f.py_func.__name__ for f in functions]
    if len(set(names)) != len(names):
        clash = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"kernel functions of one name in several modules: {clash}")
    plain, namespaces = {}, []
    for f in functions:
        code = f.py_func
        namespace = dict(code.__globals__)
        plain[code.__name__] = types.FunctionType(code.__code__, namespace, code.__name__,
                                                  code.__defaults__, code.__closure__)
        namespaces.append(namespace)
    twins = {name: numba_cuda.jit(device=True)(fn) for name, fn in plain.items()}
    for namespace in namespaces:  # calls inside a twin reach the other twins
        namespace.update(twins)
    return twins


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


def run_attempts_gpu(config, seed: int, start: int, count: int, terrain=None,
                     inputs=None, out=None, threads_per_block: int = 64):
    """``kernel.batch.run_attempts`` on the CUDA target: the same ``AttemptBatch`` (the
    simulator, or a device, computes it), with the same ``inputs`` and ``out`` reuse. A link
    leaving the terrain's grid raises TerrainError as on the CPU."""
    from . import attempt as A
    from .batch import AttemptBatch, check_range, pack_config
    from .config import GenerationConfig

    cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
    check_range(seed, start, count)
    k = inputs or pack_config(cfg, seed, terrain)
    out = AttemptBatch.empty(count, k.max_receivers) if out is None else out.head(count)
    out.attempt_index[:] = np.arange(start, start + count, dtype=np.int64)
    off_grid = np.zeros(count, np.bool_)
    workspace = (np.zeros((count, k.max_receivers, A.N_ST)),
                 np.zeros((count, int(k.ip[A.IP_CHUNKS]))),
                 np.zeros((count, k.cos_bt.shape[1])), np.zeros((count, k.kx.shape[0])),
                 np.zeros((count, k.kx.shape[0])))
    blocks = max(1, -(-count // threads_per_block))
    with quiet_wraparound():
        attempts_kernel()[blocks, threads_per_block](
            np.uint64(seed), np.int64(start), *k.arrays(), out.valid, out.reject_reason,
            out.n_receivers, out.n_detected, out.tx_antenna, out.tx_environment, out.scalars,
            out.rx, out.rx_id, out.signal_present, out.rx_antenna, off_grid, *workspace)
    if off_grid.any():
        from .terrain import TerrainError
        raise TerrainError(f"attempt {int(start + np.flatnonzero(off_grid)[0])}: a link "
                           "leaves the terrain's grid")
    return out
