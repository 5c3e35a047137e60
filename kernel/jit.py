"""One place that sets Numba's options (sgkit style): every kernel function uses ``njit``, and
every parallel kernel launch goes through ``parallel_launch``.

Numba's on-disk cache checks only the source file of the function it compiled: a kernel
function whose file did not change keeps its compiled code after a function it calls, in
another file, changed (an upgrade, a checkout). ``drop_stale_cache`` runs once, before the
first kernel function is defined, and removes the kernel's cached code when any kernel source
differs from what that code was compiled from.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from pathlib import Path

import numba

from .defaults import NUMBA_OPTIONS

KERNEL_DIR = Path(__file__).resolve().parent
STAMP = "heimdall-kernel-sources.sha256"


def sources_digest() -> str:
    """SHA-256 over the kernel package's Python sources, in name order."""
    h = hashlib.sha256()
    for path in sorted(KERNEL_DIR.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def cache_folder() -> Path | None:
    """Where Numba caches the kernel's compiled code (NUMBA_CACHE_DIR or __pycache__)."""
    try:
        from numba.core.caching import CacheImpl

        def probe():
            pass

        for locator in CacheImpl._locator_classes:
            found = locator.from_function(probe, str(KERNEL_DIR / "attempt.py"))
            if found is not None:
                return Path(found.get_cache_path())
    except Exception:  # noqa: BLE001 - a Numba without this API: fall back to its default
        pass
    return KERNEL_DIR / "__pycache__"


def drop_stale_cache() -> None:
    """Remove the kernel's cached compiled code if the kernel's sources changed since it was
    written (best effort: a folder that cannot be written keeps Numba's own behaviour)."""
    folder = cache_folder()
    if folder is None or not folder.is_dir():
        return
    digest = sources_digest()
    stamp = folder / STAMP
    try:
        if stamp.exists() and stamp.read_text().strip() == digest:
            return
        for stale in list(folder.glob("*.nbi")) + list(folder.glob("*.nbc")):
            stale.unlink(missing_ok=True)
        stamp.write_text(digest + "\n")
    except OSError:
        pass


drop_stale_cache()

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
def kernel_launch(threads: int | None = None):
    """Around a parallel kernel's launch with ``threads`` CPU threads (None: Numba's current
    number): checks the number (ConfigError naming ``threads``), sets it for the launch and
    restores it after; launches through ``parallel_launch``."""
    previous = numba.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not (
                1 <= threads <= numba.config.NUMBA_NUM_THREADS):
            from .config import ConfigError
            raise ConfigError("threads",
                              f"must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}]")
        numba.set_num_threads(threads)
    try:
        with parallel_launch():
            yield
    finally:
        numba.set_num_threads(previous)


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
