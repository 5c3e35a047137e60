"""Spatially consistent shadowing (model version 2, in progress): deterministic Gaussian random
fields over the transmitter's position.

For station i, s_i(x) = sigma (sqrt(rho) g_0(x) + sqrt(1 - rho) g_i(x)): sigma the location
variability (ITU-R P.1546's), rho the correlation between stations, g_0 a field shared by all
stations and g_i one of the station's own. Each g is a stationary, unit-variance field with the
exponential correlation exp(-r / L) of decorrelation distance L, made of random Fourier
features (Rahimi and Recht): g(x) = sqrt(2 / M) sum_m cos(w_m . x + b_m), with b_m uniform on
[0, 2 pi) and the frequencies w_m drawn from the spectrum of that correlation in the plane, a
bivariate Cauchy distribution of scale 1 / L (w = z / (L |n|) with z bivariate and n univariate
standard normals). The features are counter-based draws of (dataset seed, field), so the same
position always gets the same value in a dataset, on any machine, and nearby positions nearly
the same (as 3GPP TR 38.901's spatial consistency). Positions are planar metres.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import njit
from .rng import GOLDEN, mix64, normal, slot_key, uniform

FEATURES = 128
FIELD_SALT = np.uint64(0x6A09E667F3BCC909)  # fields are keyed apart from attempts


@njit
def field_key(seed, field):
    """The key of field ``field`` (0: shared; i + 1: station i's) of a dataset seed."""
    return mix64(mix64(np.uint64(seed) ^ FIELD_SALT) + np.uint64(field) * GOLDEN)


@njit
def field_features(seed, field, length_m, m=FEATURES):
    """(kx, ky, phase) of a field's ``m`` features, wavenumbers in rad/m."""
    key = field_key(seed, field)
    kx = np.empty(m)
    ky = np.empty(m)
    phase = np.empty(m)
    for j in range(m):
        skey = slot_key(key, np.uint64(0), np.uint64(j))
        scale = 1.0 / (length_m * max(abs(normal(skey, np.uint64(2))), 1e-12))
        kx[j] = normal(skey, np.uint64(0)) * scale
        ky[j] = normal(skey, np.uint64(1)) * scale
        phase[j] = 2.0 * math.pi * uniform(skey, np.uint64(3))
    return kx, ky, phase


@njit
def field_value(kx, ky, phase, x_m, y_m):
    """g(x): the unit-variance field at planar position (x_m, y_m)."""
    total = 0.0
    for j in range(kx.shape[0]):
        total += math.cos(kx[j] * x_m + ky[j] * y_m + phase[j])
    return math.sqrt(2.0 / kx.shape[0]) * total


def station_fields(seed: int, stations: int, length_m: float):
    """The features of the shared field and of each station's: arrays (stations + 1, M)."""
    feats = [field_features(seed, f, length_m) for f in range(stations + 1)]
    return tuple(np.stack([f[k] for f in feats]) for k in range(3))


@njit
def shadowing_db(kx, ky, phase, station, x_m, y_m, sigma_db, rho):
    """s_i(x) of station ``station`` (0-based) from ``station_fields``' arrays."""
    shared = field_value(kx[0], ky[0], phase[0], x_m, y_m)
    own = field_value(kx[station + 1], ky[station + 1], phase[station + 1], x_m, y_m)
    return sigma_db * (math.sqrt(rho) * shared + math.sqrt(1.0 - rho) * own)
