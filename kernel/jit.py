"""One place that sets Numba's options (sgkit style): every kernel function uses ``njit``."""

from __future__ import annotations

import numba

from .defaults import NUMBA_OPTIONS


def njit(*args, **kw):
    """``numba.njit`` with the project's options (cache, nogil)."""
    opts = {**NUMBA_OPTIONS, **kw}
    if args and callable(args[0]):
        return numba.njit(**opts)(args[0])
    return numba.njit(*args, **opts)
