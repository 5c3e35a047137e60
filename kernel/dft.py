"""The discrete Fourier transforms of the signals (kernel.iq, kernel.iq_features), by target.

The signal functions call ``dft`` and ``idft`` with a destination, a plan set and a work array,
so that they allocate nothing and one source serves both targets:

* on the CPU they are numpy.fft inside Numba (rocket-fft, pocketfft's algorithms); the plans
  and the work array are not used (the signal functions' CPU wrappers pass empty ones);
* on a CUDA device ``kernel.gpu`` binds these two names to ``kernel.fft``'s transforms, which
  take their twiddle factors from tables planned on the host (``fft.fft_plans``).

Both compute numpy's definitions (forward: sum x[t] e^(-2 pi i k t / n); inverse: the same
with +i, over n); they differ only in rounding (docs/GPU.md states the agreement).
"""

from __future__ import annotations

import numpy as np

from .jit import njit


@njit
def dft(x, out, plans_i, plans_t, work):
    """out[:] = numpy.fft.fft(x)."""
    out[:] = np.fft.fft(x)


@njit
def idft(x, out, plans_i, plans_t, work):
    """out[:] = numpy.fft.ifft(x)."""
    out[:] = np.fft.ifft(x)


@njit
def no_plans():
    """The empty plan set and work array the CPU's transforms ignore."""
    return np.empty((0, 1), np.int64), np.empty(0, np.complex128), np.empty(0, np.complex128)
