"""A synthetic elevation model for the benchmarks: SRTM-like (3 arc-seconds, whole metres)
over any box, rolling hills (ridges and valleys from 1 to 60 km across, a standard deviation of
about ``relief_m``), deterministic from its seed.

The benchmarks need a grid as large as a real one over the default area (about 3,700 x 4,900
cells, 73 MB) and as rough, so that profiles cost what they cost on real terrain; the tests use
matplotlib's real elevation model, which is too small for that.
"""

from __future__ import annotations

import numpy as np

from heimdall_synth.kernel.terrain import ElevationGrid

SRTM3 = 1.0 / 1200.0  # degrees


def hills_grid(box, relief_m: float = 100.0, spacing_deg: float = SRTM3, pad_deg: float = 0.05,
               seed: int = 0) -> ElevationGrid:
    """A grid covering ``box`` (south, north, west, east) widened by ``pad_deg``: 500 m plus a
    sum of plane waves of wavelengths 1-60 km in random directions (amplitude falling with
    wavelength, as real relief's spectrum does), scaled to a standard deviation of about
    ``relief_m``, clipped at 0 and rounded to the metre."""
    south, north, west, east = box
    south, north, west, east = south - pad_deg, north + pad_deg, west - pad_deg, east + pad_deg
    rows = int(np.ceil((north - south) / spacing_deg)) + 1
    cols = int(np.ceil((east - west) / spacing_deg)) + 1
    rng = np.random.default_rng(seed)
    km_per_deg = 111.2
    y = (np.arange(rows) * spacing_deg * km_per_deg)[:, None].astype(np.float32)
    x = (np.arange(cols) * spacing_deg * km_per_deg
         * np.cos(np.radians(0.5 * (south + north))))[None, :].astype(np.float32)
    wavelengths = np.geomspace(60.0, 1.0, 14)
    amplitudes = (wavelengths / 60.0) ** 0.8
    amplitudes *= relief_m / np.sqrt(0.5 * (amplitudes ** 2).sum())  # sines of random phase
    heights = np.full((rows, cols), 500.0, np.float32)
    for wavelength, amplitude in zip(wavelengths, amplitudes):
        angle = rng.uniform(0, np.pi)
        k = np.float32(2 * np.pi / wavelength)
        phase = np.float32(rng.uniform(0, 2 * np.pi))
        heights += np.float32(amplitude) * np.sin(k * (np.float32(np.cos(angle)) * x
                                                        + np.float32(np.sin(angle)) * y) + phase)
    np.clip(heights, 0.0, None, out=heights)
    return ElevationGrid.from_array(np.rint(heights), north, west, spacing_deg, spacing_deg)
