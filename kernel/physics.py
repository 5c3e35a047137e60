"""Scalar propagation and geometry functions (Numba, plain floats in and out).

Each is small enough to check against a closed form or a published value (tests/test_physics.py)
and is callable from Python as well as from the kernel.
"""

from __future__ import annotations

import math

from .jit import njit
from .layout import MIN_PATH_KM, SINGULAR_RTOL

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
