"""The ITU-R terms of model 2 (kernel/itu.py) held to their recommendations.

The references here are written independently of the kernel: the spherical-earth loss in
P.526's MHz form (its own constants, 2.2 and 9.6e-3, where the kernel uses P.452's GHz form),
the knife edge from its closed form, P.2108's clutter loss from its equations.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from heimdall_synth.kernel import itu

AE_KM = 6371.0 * 4.0 / 3.0  # k = 4/3
F_MHZ = 145.0
C = 299_792_458.0


def first_term_reference(d_km, h1, h2, f_mhz, ae_km, eps=22.0, sigma=0.003):
    """P.526 section 3.1.1: L = -F(X) - G(Y1) - G(Y2), vertical polarization, MHz form."""
    kh = 0.36 * (ae_km * f_mhz) ** (-1 / 3) * ((eps - 1) ** 2 + (18000 * sigma / f_mhz) ** 2) ** -0.25
    k = kh * math.hypot(eps, 18000 * sigma / f_mhz)
    beta = (1 + 1.6 * k**2 + 0.67 * k**4) / (1 + 4.5 * k**2 + 1.53 * k**4)
    x = 2.2 * beta * f_mhz ** (1 / 3) * ae_km ** (-2 / 3) * d_km

    def f(x):
        return 11 + 10 * math.log10(x) - 17.6 * x if x >= 1.6 else (
            -20 * math.log10(x) - 5.6488 * x ** 1.425)

    def g(h):
        b = beta * 9.6e-3 * f_mhz ** (2 / 3) * ae_km ** (-1 / 3) * h
        value = (17.6 * math.sqrt(b - 1.1) - 5 * math.log10(b - 1.1) - 8 if b > 2
                 else 20 * math.log10(b + 0.1 * b**3))
        return max(value, 2 + 20 * math.log10(k))

    return -f(x) - g(h1) - g(h2)


def spherical_earth_reference(d_km, h1, h2, f_mhz, ae_km):
    """The spherical-earth loss as P.526 (and P.452, P.1812) define it: the first term beyond
    the marginal line-of-sight distance; within it, scaled by the clearance's shortfall below
    0.552 of the first Fresnel zone, at the modified radius that makes the path marginal."""
    wavelength = C / (f_mhz * 1e6)
    d_los = math.sqrt(2 * ae_km) * (math.sqrt(h1 / 1000) + math.sqrt(h2 / 1000))
    if d_km >= d_los:
        return first_term_reference(d_km, h1, h2, f_mhz, ae_km)
    c = (h1 - h2) / (h1 + h2)
    m = 250 * d_km**2 / (ae_km * (h1 + h2))
    b = 2 * math.sqrt((m + 1) / (3 * m)) * math.cos(
        math.pi / 3 + math.acos(3 * c / 2 * math.sqrt(3 * m / (m + 1) ** 3)) / 3)
    d1 = d_km * (1 + b) / 2
    d2 = d_km - d1
    h_se = ((h1 - 500 * d1**2 / ae_km) * d2 + (h2 - 500 * d2**2 / ae_km) * d1) / d_km
    h_req = 17.456 * math.sqrt(d1 * d2 * wavelength / d_km)
    if h_se > h_req:
        return 0.0
    a_em = 500 * (d_km / (math.sqrt(h1) + math.sqrt(h2))) ** 2
    loss = first_term_reference(d_km, h1, h2, f_mhz, a_em)
    return 0.0 if loss < 0 else (1 - h_se / h_req) * loss


def knife_edge_reference(v):
    return 0.0 if v <= -0.78 else 6.9 + 20 * math.log10(math.sqrt((v - 0.1) ** 2 + 1) + v - 0.1)


@pytest.mark.parametrize("d_km", [140.0, 160.0, 180.0, 200.0, 250.0])
def test_spherical_earth_first_term_equals_p526(d_km):
    """The kernel uses P.452's GHz form (21.88, 0.9575), the reference P.526's MHz form (2.2,
    9.6e-3): the same formula with its constants rounded differently, 0.6 % apart in X, which
    is under 1 dB at these distances."""
    got = itu.spherical_earth_first_term_db(d_km, 300.0, 250.0, F_MHZ, AE_KM)
    assert got == pytest.approx(first_term_reference(d_km, 300.0, 250.0, F_MHZ, AE_KM), abs=1.0)


def test_beyond_the_horizon_the_loss_is_p526s_not_a_knife_edges():
    """Ends at 300 m and 250 m at 145 MHz: about 25 dB at 160 km and 43 dB at 200 km (a single
    knife edge on the earth bulge gives 10 and 16 dB there)."""
    at_160 = itu.spherical_earth_diffraction_db(160.0, 300.0, 250.0, F_MHZ, AE_KM)
    at_200 = itu.spherical_earth_diffraction_db(200.0, 300.0, 250.0, F_MHZ, AE_KM)
    assert at_160 == pytest.approx(25.0, abs=1.0) and at_200 == pytest.approx(43.0, abs=1.0)


def test_spherical_earth_loss_is_zero_well_within_line_of_sight_and_grows_beyond():
    assert itu.spherical_earth_diffraction_db(20.0, 300.0, 250.0, F_MHZ, AE_KM) == 0.0
    losses = [itu.spherical_earth_diffraction_db(d, 30.0, 10.0, F_MHZ, AE_KM)
              for d in (10.0, 20.0, 30.0, 40.0, 60.0, 80.0, 120.0)]
    assert all(b >= a for a, b in zip(losses, losses[1:])) and losses[-1] > 20.0
    higher = itu.spherical_earth_diffraction_db(80.0, 60.0, 10.0, F_MHZ, AE_KM)
    assert higher < itu.spherical_earth_diffraction_db(80.0, 30.0, 10.0, F_MHZ, AE_KM)


@pytest.mark.parametrize("d_km", [100.0, 150.0, 200.0, 250.0])
def test_delta_bullington_on_a_flat_profile_is_the_spherical_earth_loss(d_km):
    d = np.linspace(0.0, d_km, int(d_km * 10) + 1)  # 100 m steps
    got = itu.delta_bullington_db(d, np.zeros_like(d), 300.0, 250.0, F_MHZ, AE_KM)
    assert got == pytest.approx(spherical_earth_reference(d_km, 300.0, 250.0, F_MHZ, AE_KM),
                                abs=1.0)


def test_a_single_ridge_is_p526s_knife_edge():
    """A 10 km path over flat ground at sea level with one 300 m ridge 4 km from the
    transmitter, antennas 100 m and 80 m high: Bullington's edge is the ridge, its loss P.526's
    J(v) with the earth's bulge at the ridge, plus P.526's correction [1 - exp(-J/6)] (10 + 0.02
    d); the smooth earth alone would clear the path (0 dB), so the delta adds nothing."""
    d = np.linspace(0.0, 10.0, 1001)
    h = np.where(np.isclose(d, 4.0), 300.0, 0.0)
    tx, rx = 100.0, 80.0
    d1, d2 = 4.0, 6.0
    assert spherical_earth_reference(10.0, tx, rx, F_MHZ, AE_KM) == 0.0
    wavelength = C / (F_MHZ * 1e6)
    bulge = 1000.0 * d1 * d2 / (2.0 * AE_KM)  # m: d1 d2 / (2 a_e), distances in km
    ray = (tx * d2 + rx * d1) / 10.0
    clearance = 300.0 + bulge - ray
    v = clearance * math.sqrt(2.0 * 10.0 * 1000.0 / (wavelength * d1 * 1000.0 * d2 * 1000.0))
    j = knife_edge_reference(v)
    expected = j + (1.0 - math.exp(-j / 6.0)) * (10.0 + 0.02 * 10.0)
    assert itu.bullington_db(d, h, tx, rx, F_MHZ, AE_KM) == pytest.approx(expected, abs=1e-6)
    assert itu.delta_bullington_db(d, h, tx, rx, F_MHZ, AE_KM) == pytest.approx(expected, abs=1e-6)


def test_a_clear_path_loses_nothing_and_a_higher_ridge_loses_more():
    d = np.linspace(0.0, 5.0, 501)
    assert itu.delta_bullington_db(d, np.zeros_like(d), 30.0, 30.0, F_MHZ, AE_KM) == 0.0
    losses = []
    for ridge in (20.0, 40.0, 80.0, 160.0):
        h = np.where(np.isclose(d, 2.5), ridge, 0.0)
        losses.append(itu.delta_bullington_db(d, h, 10.0, 10.0, F_MHZ, AE_KM))
    assert all(b > a for a, b in zip(losses, losses[1:]))


def test_terrain_loss_is_symmetric_in_its_ends():
    """Reciprocity: the same profile seen from the other end loses the same."""
    rng = np.random.default_rng(3)
    d = np.linspace(0.0, 40.0, 401)
    h = 200.0 + np.cumsum(rng.normal(0.0, 8.0, d.size))
    forward = itu.delta_bullington_db(d, h, 10.0, 1.5, F_MHZ, AE_KM)
    backward = itu.delta_bullington_db(d[-1] - d[::-1], h[::-1].copy(), 1.5, 10.0, F_MHZ, AE_KM)
    assert forward == pytest.approx(backward, abs=1e-6) and forward > 0.0


def p2108_reference(f_mhz, h, r, model):
    """P.2108 section 3.1, equations (2a) and (2b), written out."""
    f_ghz = f_mhz / 1000.0
    if h >= r:
        return 0.0
    if model == 1:
        return -(21.8 + 6.2 * math.log10(f_ghz)) * math.log10(h / r)
    h_dif = r - h
    theta = math.degrees(math.atan(h_dif / 27.0))
    nu = 0.342 * math.sqrt(f_ghz) * math.sqrt(h_dif * theta)
    return knife_edge_reference(nu) - 6.03


@pytest.mark.parametrize("kind, r, model, at_145_1_5", [
    (itu.CLUTTER_OPEN, 10.0, 1, 13.68), (itu.CLUTTER_TREES, 15.0, 2, 14.74),
    (itu.CLUTTER_SUBURBAN, 10.0, 2, 11.19), (itu.CLUTTER_URBAN, 15.0, 2, 14.74),
    (itu.CLUTTER_DENSE_URBAN, 20.0, 2, 17.16)])
def test_p2108_clutter_loss_for_each_environment(kind, r, model, at_145_1_5):
    """The terminal clutter loss at 145 MHz and 1.5 m (the values hand-computed from P.2108's
    equations), and at other heights and frequencies the equations themselves."""
    assert itu.clutter_loss_db(145.0, 1.5, kind) == pytest.approx(at_145_1_5, abs=0.01)
    assert itu.CLUTTER_TYPES[kind] == (r, model)
    for f in (30.0, 145.0, 433.0, 1296.0, 3000.0):
        for h in (1.0, 1.5, 5.0, r - 0.5, r, r + 5.0):
            assert itu.clutter_loss_db(f, h, kind) == pytest.approx(
                p2108_reference(f, h, r, model), abs=1e-9)
    heights = [itu.clutter_loss_db(145.0, h, kind) for h in (1.0, 2.0, 4.0, 8.0)]
    assert all(b < a for a, b in zip(heights, heights[1:]))


@pytest.mark.parametrize("d_km, h1, h2", [(10.0, 10.0, 5.0), (30.0, 10.0, 1.5), (60.0, 30.0, 10.0)])
def test_low_antennas_over_smooth_ground_lose_the_spherical_earth_loss(d_km, h1, h2):
    """Within the radio horizon but with the first Fresnel zone obstructed by the smooth earth
    itself (antennas a few metres up), the delta term brings Bullington up to the
    spherical-earth loss: over a flat profile the method gives max(Bullington, spherical)."""
    d = np.linspace(0.0, d_km, int(d_km * 10) + 1)
    got = itu.delta_bullington_db(d, np.zeros_like(d), h1, h2, F_MHZ, AE_KM)
    sphere = spherical_earth_reference(d_km, h1, h2, F_MHZ, AE_KM)
    assert sphere > 0.0
    assert got == pytest.approx(max(sphere, itu.bullington_db(
        d, np.zeros_like(d), h1, h2, F_MHZ, AE_KM)), abs=1.0)


@pytest.mark.parametrize("d_km, h1, h2", [(10.0, 1.5, 10.0), (20.0, 300.0, 60.0),
                                          (50.0, 300.0, 310.0), (87.0, 300.0, 510.0),
                                          (120.0, 300.0, 900.0), (60.0, 300.0, 10.0),
                                          (150.0, 300.0, 250.0)])
def test_smooth_earth_bullington_is_bullington_on_a_dense_smooth_profile(d_km, h1, h2):
    """The closed form (horizon tangents beyond line of sight, Newton's peak of the Fresnel
    parameter within it) against the profile method on 200,001 points of a smooth earth."""
    d = np.linspace(0.0, d_km, 200_001)
    dense = itu.bullington_db(d, np.zeros_like(d), h1, h2, F_MHZ, AE_KM)
    loss, v = itu.smooth_earth_bullington(d_km, h1, h2, F_MHZ, AE_KM)
    assert loss == pytest.approx(dense, abs=1e-4)
    wavelength = C / (F_MHZ * 1e6)
    x = d[1:-1]
    clearance = 500.0 * x * (d_km - x) / AE_KM - (h1 * (d_km - x) + h2 * x) / d_km
    v_dense = (clearance * np.sqrt(0.002 * d_km / (wavelength * x * (d_km - x)))).max()
    if v_dense < 0.0:  # the ray clears the earth: v is the most obstructing point's
        assert v == pytest.approx(v_dense, abs=1e-6)
    else:  # beyond the horizon: the edge where the tangents meet
        assert v > 0.0
