"""One place that sets Numba's options (sgkit style): every kernel function uses ``njit``, and
every parallel kernel launch goes through ``parallel_launch``."""

from __future__ import annotations

import threading
from contextlib import contextmanager

import numba

from .defaults import NUMBA_OPTIONS

#: Threading layers that allow parallel kernels to be launched from several threads at once.
THREAD_SAFE_LAYERS = ("omp", "tbb")

_launch_lock = threading.Lock()
_concurrent_ok: bool | None = None  # unknown until the first parallel launch has chosen a layer


def njit(*args, **kw):
    """``numba.njit`` with the project's options (cache, nogil)."""
    opts = {**NUMBA_OPTIONS, **kw}
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)


@contextmanager
def parallel_launch():
    """Around every launch of a parallel kernel: makes launches from several threads safe.

    Two jobs of one service run their kernels from two threads. With the OpenMP or TBB layer
    that is fine; Numba's fallback, the ``workqueue`` layer (an install without libgomp or
    TBB), aborts the whole process when a second thread launches a parallel kernel while one
    runs. So launches are serialized until the first launch has shown the layer in use, and
    stay serialized when it is not one of THREAD_SAFE_LAYERS."""
    global _concurrent_ok
    if _concurrent_ok:
        yield
        return
    with _launch_lock:
        yield
        if _concurrent_ok is None:
            try:
                _concurrent_ok = numba.threading_layer() in THREAD_SAFE_LAYERS
            except ValueError:  # no parallel launch has happened yet
                pass
