"""Scalar propagation and geometry functions (Numba, plain floats in and out).

Each is small enough to check against a closed form or a published value (tests/test_physics.py)
and is callable from Python as well as from the kernel.
"""

from __future__ import annotations

import math

from .jit import njit
from .layout import (EARTH_RADIUS_M, K_FACTOR, MIN_PATH_KM, SINGULAR_RTOL, SPEED_OF_LIGHT)

INF = math.inf
DB20_PER_NEPER = 20.0 / math.log(10.0)


@njit(inline="always")
def fspl_db(d_km, f_mhz):
    """Free-space path loss (dB): 20 log10(d_km) + 20 log10(f_MHz) + 32.44."""
    return 20.0 * math.log10(max(d_km, MIN_PATH_KM)) + 20.0 * math.log10(f_mhz) + 32.44


@njit(inline="always")
def knife_edge_loss_db(v):
    """ITU-R P.526 single knife-edge loss J(v); 0 for v <= -0.78 (first Fresnel zone clear)."""
    if v <= -0.78:
        return 0.0
    # 20 log10(sqrt((v - 0.1)^2 + 1) + v - 0.1) is 20 / ln(10) * asinh(v - 0.1): one call
    return 6.9 + DB20_PER_NEPER * math.asinh(v - 0.1)


@njit(inline="always")
def earth_bulge_edge(d_m, h1_m, h2_m, wavelength_m):
    """The smooth-earth bulge (k = 4/3) as a knife edge at its point of greatest obstruction
    above the line of sight between antennas h1 and h2 (m above sea level).

    The obstruction height h(x) = x (d - x) / (2 k R) - (h1 + (h2 - h1) x / d) peaks at
    x* = d/2 - k R (h2 - h1) / d, kept within 1 %..99 % of the path so the edge is never at an
    antenna. Returns (h, w) with the Fresnel parameter v = h sqrt(w).
    """
    re = K_FACTOR * EARTH_RADIUS_M
    inv_d = 1.0 / d_m
    x = 0.5 * d_m - re * (h2_m - h1_m) * inv_d
    x = min(max(x, 0.01 * d_m), 0.99 * d_m)
    h = x * (d_m - x) * (0.5 / re) - (h1_m + (h2_m - h1_m) * x * inv_d)
    return h, 2.0 * d_m / (wavelength_m * x * (d_m - x))


@njit
def earth_bulge_v(d_m, h1_m, h2_m, wavelength_m):
    """Fresnel parameter v of the earth bulge (positive when it rises above the line of sight)."""
    h, w = earth_bulge_edge(d_m, h1_m, h2_m, wavelength_m)
    return h * math.sqrt(w)


@njit(inline="always")
def diffraction_loss_db(d_km, h1_m, h2_m, f_mhz):
    """Smooth-earth diffraction loss (dB) of a path: J(v) of the earth bulge."""
    d_m = max(d_km, MIN_PATH_KM) * 1000.0
    h, w = earth_bulge_edge(d_m, h1_m, h2_m, SPEED_OF_LIGHT / (f_mhz * 1e6))
    if h < 0.0 and h * h * w >= 0.78 * 0.78:
        return 0.0  # v <= -0.78: first Fresnel zone clear (no square root or log needed)
    return knife_edge_loss_db(h * math.sqrt(w))


@njit
def radio_horizon_km(h1_m, h2_m):
    """Distance at which the line of sight grazes the k = 4/3 earth: sqrt(2kRh1) + sqrt(2kRh2)."""
    re = K_FACTOR * EARTH_RADIUS_M
    return (math.sqrt(2.0 * re * h1_m) + math.sqrt(2.0 * re * h2_m)) / 1000.0


@njit
def gaseous_absorption_db_per_km(f_mhz):
    """Specific attenuation (dB/km): ITU-R P.676's simplified oxygen and water-vapour lines
    (7.5 g/m^3, sea level, 15 C). No floor: at VHF it is a few 1e-4 dB/km."""
    f = f_mhz / 1000.0
    oxygen = (7.2 / (f * f + 0.34) + 0.62 / ((54.0 - f) ** 1.16 + 0.83)) * f * f * 1e-3
    rho = 7.5
    water = (0.05 + 0.0021 * rho + 3.6 / ((f - 22.2) ** 2 + 8.5)
             + 10.6 / ((f - 183.3) ** 2 + 9.0) + 8.9 / ((f - 325.4) ** 2 + 26.3)) * f * f * rho * 1e-4
    return oxygen + water


@njit(inline="always")
def pattern_loss_db(offset_deg, half_beamwidth_deg, front_to_back_db):
    """Directional pattern: main lobe 3 (offset / half beamwidth)^2 dB, floored at the back
    lobe's front-to-back ratio. 0 for omnidirectional antennas (half beamwidth 0)."""
    if half_beamwidth_deg <= 0.0:
        return 0.0
    r = offset_deg / half_beamwidth_deg
    return min(3.0 * r * r, front_to_back_db)


@njit(inline="always")
def inv3_sym_diag(a, b, c, d, e, f):
    """Diagonal (q11, q22, q33) of the inverse of the symmetric matrix [[a b c] [b d e] [c e f]];
    +inf when it is singular: det <= SINGULAR_RTOL * a * d * f. For a positive semi-definite
    matrix det <= a d f (Hadamard), with equality when it is diagonal, so the test does not
    depend on the units of each axis (the CRB mixes 1/m^2 and 1)."""
    c11 = d * f - e * e
    c22 = a * f - c * c
    c33 = a * d - b * b
    det = a * c11 - b * (b * f - c * e) + c * (b * e - d * c)
    if not det > SINGULAR_RTOL * a * d * f:
        return INF, INF, INF
    return c11 / det, c22 / det, c33 / det


@njit
def gdop_enu(u_e, u_n):
    """(GDOP, HDOP) of unit vectors (east, north) toward the receivers, with the clock column:
    H rows [u_e, u_n, 1], Q = (H^T H)^-1. +inf for fewer than 3 receivers or a singular H."""
    n = u_e.shape[0]
    if n < 3:
        return INF, INF
    a = b = c = d = e = 0.0
    for i in range(n):
        a += u_e[i] * u_e[i]
        b += u_e[i] * u_n[i]
        c += u_e[i]
        d += u_n[i] * u_n[i]
        e += u_n[i]
    q11, q22, q33 = inv3_sym_diag(a, b, c, d, e, float(n))
    return math.sqrt(q11 + q22 + q33), math.sqrt(q11 + q22)


@njit
def crb_rss_m(u_e, u_n, d_m, sigma_db, path_c):
    """RSS Cramer-Rao bound (m) with unknown transmit power: J = (1/s^2) sum g g^T,
    g = [c u_e / d, c u_n / d, 1]; sqrt((J^-1)_11 + (J^-1)_22). +inf below 3 receivers."""
    n = u_e.shape[0]
    if n < 3:
        return INF
    a = b = c = d = e = 0.0
    for i in range(n):
        ge = path_c * u_e[i] / d_m[i]
        gn = path_c * u_n[i] / d_m[i]
        a += ge * ge
        b += ge * gn
        c += ge
        d += gn * gn
        e += gn
    q11, q22, _ = inv3_sym_diag(a, b, c, d, e, float(n))
    return sigma_db * math.sqrt(q11 + q22)
