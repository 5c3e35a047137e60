"""Spatially consistent shadowing: deterministic Gaussian random fields over the transmitter's
position (model version 2).

For station i, s_i(x) = sigma (sqrt(rho) g_0(x) + sqrt(1 - rho) g_i(x)): sigma the location
variability (ITU-R P.1546's), rho the correlation between stations, g_0 a field shared by all
stations and g_i one of the station's own. Each g is a stationary, unit-variance field with the
exponential correlation exp(-r / L) of decorrelation distance L, made of random Fourier
features (Rahimi and Recht): g(x) = sqrt(2 / M) sum_m cos(w_m . x + b_m), the frequencies w_m
drawn from the spectrum of that correlation in the plane, a bivariate Cauchy distribution of
scale 1 / L (w = z / (L |n|), z bivariate and n univariate standard normals), the phases b_m
uniform on [0, 2 pi).

The fields of a dataset share their M frequencies and each has its own phases: for given
frequencies, fields with independent uniform phases are uncorrelated, and (as M grows) jointly
Gaussian, hence independent. Sharing lets one attempt compute cos and sin of w_m . x once
(``field_basis``) and each field as a dot product (``field_at``): cos(t + b) = cos t cos b -
sin t sin b. Frequencies and phases are counter-based draws of the dataset seed alone, so the
same position always gets the same value, on any machine, and nearby positions nearly the same
(as 3GPP TR 38.901's spatial consistency).

Positions are planar metres: x east, y north, an equirectangular projection whose scale is
true at the dataset's reference latitude (``plane_xy``).
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit
from .rng import GOLDEN, mix64, normal, slot_key, uniform

FEATURES = 128
FIELD_SALT = np.uint64(0x6A09E667F3BCC909)  # fields are keyed apart from attempts
EARTH_RADIUS_M = 6_371_000.0

# sin and cos for the features (fdlibm's kernels, Cody-Waite reduction by pi/2 in three
# parts): plain arithmetic that LLVM vectorizes, where libm's calls are not (8x faster here),
# and exact to an ulp or two over the phases a field meets.
_PIO2_1, _PIO2_2, _PIO2_2T = 1.57079632673412561417e+00, 6.07710050630396597660e-11, \
    2.02226624879595063154e-21
_TWO_OVER_PI = 0.63661977236758134308
_S1, _S2, _S3 = -1.66666666666666324348e-01, 8.33333333332248946124e-03, -1.98412698298579493134e-04
_S4, _S5, _S6 = 2.75573137070700676789e-06, -2.50507602534068634195e-08, 1.58969099521155010221e-10
_C1, _C2, _C3 = 4.16666666666666019037e-02, -1.38888888888741095749e-03, 2.48015872894767294178e-05
_C4, _C5, _C6 = -2.75573143513906633035e-07, 2.08757232129817482790e-09, -1.13596475577881948265e-11


@njit(inline="always")
def sincos(a):
    """(sin a, cos a)."""
    n = math.floor(a * _TWO_OVER_PI + 0.5)
    r = ((a - n * _PIO2_1) - n * _PIO2_2) - n * _PIO2_2T
    z = r * r
    s = r + r * z * (_S1 + z * (_S2 + z * (_S3 + z * (_S4 + z * (_S5 + z * _S6)))))
    c = 1.0 - 0.5 * z + z * z * (_C1 + z * (_C2 + z * (_C3 + z * (_C4 + z * (_C5 + z * _C6)))))
    q = n - 4.0 * math.floor(0.25 * n)  # quadrant 0..3
    swap = q == 1.0 or q == 3.0
    sin_a = c if swap else s
    cos_a = s if swap else c
    return (-sin_a if q >= 2.0 else sin_a), (-cos_a if q == 1.0 or q == 2.0 else cos_a)


@njit
def field_key(seed, field):
    """The key of a dataset's field draws: field -1 the shared frequencies, 0 the shared
    field's phases, i + 1 station i's."""
    return mix64(mix64(np.uint64(seed) ^ FIELD_SALT) + np.uint64(field + 1) * GOLDEN)



@njit
def _frequencies(key, length_m, kx, ky):
    for j in range(kx.shape[0]):
        skey = slot_key(key, np.uint64(0), np.uint64(j))
        scale = 1.0 / (length_m * max(abs(normal(skey, np.uint64(2))), 1e-12))
        kx[j] = normal(skey, np.uint64(0)) * scale
        ky[j] = normal(skey, np.uint64(1)) * scale


@njit
def _phases(key, cos_b, sin_b):
    for j in range(cos_b.shape[0]):
        b = 2.0 * math.pi * uniform(slot_key(key, np.uint64(0), np.uint64(j)), np.uint64(3))
        cos_b[j] = math.cos(b)
        sin_b[j] = math.sin(b)


def station_fields(seed: int, stations: int, length_m: float, m: int = FEATURES):
    """A dataset's fields: (kx, ky) the M shared frequencies (rad/m) and (cos_b, sin_b) the
    phases of the shared field (row 0) and of each station's (rows 1..stations)."""
    kx, ky = np.empty(m), np.empty(m)
    _frequencies(np.uint64(field_key(seed, -1)), float(length_m), kx, ky)
    cos_b, sin_b = np.empty((stations + 1, m)), np.empty((stations + 1, m))
    for f in range(stations + 1):
        _phases(np.uint64(field_key(seed, f)), cos_b[f], sin_b[f])
    return kx, ky, cos_b, sin_b


@njit(inline="always")
def plane_xy(lat_deg, lon_deg, cos_lat0):
    """Planar metres (east, north) of a position: equirectangular, true at the latitude whose
    cosine is cos_lat0."""
    return (EARTH_RADIUS_M * math.radians(lon_deg) * cos_lat0,
            EARTH_RADIUS_M * math.radians(lat_deg))


@njit(inline="always")
def field_basis(kx, ky, x_m, y_m, cos_t, sin_t):
    """cos and sin of every feature's w . x at (x_m, y_m), into cos_t and sin_t."""
    for j in range(kx.shape[0]):
        s, c = sincos(kx[j] * x_m + ky[j] * y_m)
        cos_t[j] = c
        sin_t[j] = s


@njit(inline="always")
def field_at(cos_b, sin_b, f, cos_t, sin_t):
    """g_f at the position whose basis is (cos_t, sin_t): unit variance."""
    total = 0.0
    for j in range(cos_t.shape[0]):
        total += cos_b[f, j] * cos_t[j] - sin_b[f, j] * sin_t[j]
    return math.sqrt(2.0 / cos_t.shape[0]) * total


@njit(inline="always")
def fields_at(cos_bt, sin_bt, cos_t, sin_t, out):
    """Every field g_f at the position whose basis is (cos_t, sin_t), into out[f], from the
    phases transposed (features x fields, ``transposed_phases``): field_at's sums, term by
    term in the same order, for all fields at once (the loop over fields vectorizes)."""
    n_f = out.shape[0]
    for f in range(n_f):
        out[f] = 0.0
    for j in range(cos_t.shape[0]):
        c, s = cos_t[j], sin_t[j]
        for f in range(n_f):
            out[f] += cos_bt[j, f] * c - sin_bt[j, f] * s
    scale = math.sqrt(2.0 / cos_t.shape[0])
    for f in range(n_f):
        out[f] *= scale


def transposed_phases(cos_b, sin_b):
    """``station_fields``' phases as ``fields_at`` reads them: (features, fields), contiguous."""
    return np.ascontiguousarray(cos_b.T), np.ascontiguousarray(sin_b.T)


@njit
def shadowing_db(kx, ky, cos_b, sin_b, station, x_m, y_m, sigma_db, rho):
    """s_i(x) of station ``station`` (0-based) from ``station_fields``' arrays."""
    cos_t = np.empty(kx.shape[0])
    sin_t = np.empty(kx.shape[0])
    field_basis(kx, ky, x_m, y_m, cos_t, sin_t)
    shared = field_at(cos_b, sin_b, 0, cos_t, sin_t)
    own = field_at(cos_b, sin_b, station + 1, cos_t, sin_t)
    return sigma_db * (math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * own)
