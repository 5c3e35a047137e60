"""Spatially consistent shadowing (kernel/shadowing.py): the same position always gets the same
value, nearby positions nearly the same, far ones independent; per-station variance sigma^2,
correlation rho between stations, correlation exp(-r / L) over distance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heimdall_synth.kernel import shadowing as S

SIGMA, RHO, L = 5.5, 0.5, 200.0


def values(seed, station, xs, ys, length=L, sigma=SIGMA, rho=RHO, stations=7):
    fields = S.station_fields(seed, stations, length)
    return np.array([S.shadowing_db(*fields, station, x, y, sigma, rho)
                     for x, y in zip(xs, ys)])


def test_the_same_position_gets_the_same_value_in_a_dataset():
    xs, ys = np.array([0.0, 1234.5, -5e4]), np.array([0.0, 987.0, 3e4])
    assert np.array_equal(values(42, 3, xs, ys), values(42, 3, xs, ys))
    assert not np.array_equal(values(42, 3, xs, ys), values(43, 3, xs, ys))
    assert not np.array_equal(values(42, 3, xs, ys), values(42, 4, xs, ys))


def pairs(lag_m, seeds=150, points=12, station=0, rho=RHO):
    """(value at x, value at x + lag) over many seeds and positions (the field's ensemble)."""
    rng = np.random.default_rng(7)
    a, b = [], []
    for seed in range(seeds):
        xs, ys = rng.uniform(-1e5, 1e5, points), rng.uniform(-1e5, 1e5, points)
        angle = rng.uniform(0, 2 * math.pi, points)
        a.append(values(seed, station, xs, ys, rho=rho))
        b.append(values(seed, station, xs + lag_m * np.cos(angle), ys + lag_m * np.sin(angle),
                        rho=rho))
    return np.concatenate(a), np.concatenate(b)


def test_variance_is_sigma_squared_and_the_mean_zero():
    a, _ = pairs(0.0)
    assert a.std() == pytest.approx(SIGMA, rel=0.1) and abs(a.mean()) < 0.1 * SIGMA


@pytest.mark.parametrize("lag", [20.0, 100.0, 200.0, 400.0, 5000.0])
def test_correlation_over_distance_is_exponential(lag):
    """Within 20 m nearly the same (0.90), at L 1/e, far apart independent."""
    a, b = pairs(lag)
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(math.exp(-lag / L), abs=0.08)


def test_nearby_transmitters_get_nearly_the_same_shadowing():
    a, b = pairs(20.0)
    assert np.sqrt(np.mean((a - b) ** 2)) < 0.5 * SIGMA


def test_stations_are_correlated_by_rho():
    rng = np.random.default_rng(3)
    one, two = [], []
    for seed in range(300):
        xs, ys = rng.uniform(-1e5, 1e5, 8), rng.uniform(-1e5, 1e5, 8)
        one.append(values(seed, 0, xs, ys))
        two.append(values(seed, 5, xs, ys))
    assert np.corrcoef(np.concatenate(one), np.concatenate(two))[0, 1] == pytest.approx(
        RHO, abs=0.08)


def test_fast_sincos_is_libms_to_an_ulp_or_two():
    rng = np.random.default_rng(11)
    a = np.concatenate([rng.uniform(-10, 10, 3000), rng.uniform(-1e6, 1e6, 3000),
                        np.arange(-8, 9) * math.pi / 4])
    got = np.array([S.sincos(v) for v in a])
    assert np.abs(got[:, 0] - np.sin(a)).max() < 4e-16
    assert np.abs(got[:, 1] - np.cos(a)).max() < 4e-16
