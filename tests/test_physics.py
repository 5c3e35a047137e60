"""Each model term against closed forms and published values (docs/MODEL.md)."""

import math

import numpy as np
import pytest

from heimdall_synth.kernel import physics as P
from heimdall_synth.kernel.layout import RSS_C


def test_free_space_loss_published_value():
    # 10 km at 145 MHz: 20 + 43.227 + 32.44
    assert P.fspl_db(10.0, 145.0) == pytest.approx(95.67, abs=0.005)
    # +6 dB per doubling of distance and of frequency
    assert P.fspl_db(20.0, 145.0) - P.fspl_db(10.0, 145.0) == pytest.approx(20 * math.log10(2))
    assert P.fspl_db(10.0, 290.0) - P.fspl_db(10.0, 145.0) == pytest.approx(20 * math.log10(2))


@pytest.mark.parametrize("v, expected, tol", [
    (-0.78, 0.0, 1e-12),   # ITU-R P.526: the loss starts here
    (-1.5, 0.0, 1e-12),    # first Fresnel zone clear: nothing lost
    (-0.7799, 0.0, 0.01),  # continuous at the threshold (J(-0.78) = 0.004 by the formula)
    (0.0, 6.0, 0.05),      # grazing: 6 dB
    (1.0, 13.9, 0.05),
    (2.4, 20.5, 0.1),      # read off the P.526 curve
])
def test_knife_edge_p526(v, expected, tol):
    assert P.knife_edge_loss_db(v) == pytest.approx(expected, abs=tol)


def test_knife_edge_large_v_asymptote():
    for v in (5.0, 10.0, 20.0):
        assert P.knife_edge_loss_db(v) == pytest.approx(13.0 + 20 * math.log10(v), abs=0.3)


def test_gaseous_absorption_is_p676s_without_a_floor():
    # ITU-R P.676's oxygen and water vapour at 145 MHz: about 4e-4 dB/km (no VHF floor)
    assert 3e-4 < P.gaseous_absorption_db_per_km(145.0) < 6e-4
    assert P.gaseous_absorption_db_per_km(6000.0) > P.gaseous_absorption_db_per_km(145.0)


def test_antenna_pattern():
    assert P.pattern_loss_db(0.0, 20.0, 20.0) == 0.0
    assert P.pattern_loss_db(20.0, 20.0, 20.0) == pytest.approx(3.0)  # -3 dB at half beamwidth
    assert P.pattern_loss_db(180.0, 20.0, 20.0) == 20.0                 # back lobe: front-to-back
    assert P.pattern_loss_db(90.0, 0.0, 0.0) == 0.0                     # omnidirectional


def unit_vectors(bearings_deg):
    b = np.radians(np.asarray(bearings_deg, dtype=float))
    return np.sin(b), np.cos(b)


def test_gdop_three_receivers_120_degrees():
    ue, un = unit_vectors([0, 120, 240])
    gdop, hdop = P.gdop_enu(ue, un)
    assert gdop == pytest.approx(math.sqrt(5 / 3), rel=1e-12)
    assert hdop == pytest.approx(math.sqrt(4 / 3), rel=1e-12)
    # rotating the layout changes nothing
    ue, un = unit_vectors([33, 153, 273])
    assert P.gdop_enu(ue, un)[0] == pytest.approx(math.sqrt(5 / 3), rel=1e-12)


def test_gdop_four_receivers_90_degrees():
    ue, un = unit_vectors([0, 90, 180, 270])
    gdop, hdop = P.gdop_enu(ue, un)
    assert gdop == pytest.approx(math.sqrt(1.25), rel=1e-12)  # Q = diag(1/2, 1/2, 1/4)
    assert hdop == pytest.approx(1.0, rel=1e-12)


@pytest.mark.parametrize("bearings", [[10, 190, 10], [45, 225, 45, 225], [0, 0, 0]])
def test_gdop_collinear_is_infinite(bearings):
    ue, un = unit_vectors(bearings)
    assert P.gdop_enu(ue, un) == (math.inf, math.inf)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_gdop_fewer_than_three_is_infinite(n):
    ue, un = unit_vectors([0, 120, 240][:n])
    assert P.gdop_enu(ue, un) == (math.inf, math.inf)


def test_crb_symmetric_layout_hand_derived():
    # Three receivers at distance d, 120 degrees apart: sum g g^T = diag(1.5 c^2/d^2,
    # 1.5 c^2/d^2, 3), so J^-1 = s^2 diag(d^2/(1.5 c^2), d^2/(1.5 c^2), 1/3) and
    # crb = s d / c * sqrt(4/3).
    d, s = 25_000.0, 4.0
    ue, un = unit_vectors([0, 120, 240])
    crb = P.crb_rss_m(ue, un, np.full(3, d), s, RSS_C)
    assert crb == pytest.approx(s * d / RSS_C * math.sqrt(4 / 3), rel=1e-12)
    assert RSS_C == pytest.approx(20 / math.log(10))
    # scales linearly with distance and shadowing
    assert P.crb_rss_m(ue, un, np.full(3, 2 * d), 2 * s, RSS_C) == pytest.approx(4 * crb)
    assert P.crb_rss_m(ue[:2], un[:2], np.full(2, d), s, RSS_C) == math.inf


def test_inverse_diagonal_singularity_is_scale_free():
    # A well-conditioned matrix with tiny entries on one axis is not singular ...
    q = P.inv3_sym_diag(1e-10, 0.0, 0.0, 1e-10, 0.0, 3.0)
    assert q == pytest.approx((1e10, 1e10, 1 / 3))
    # ... and a rank-2 one is, whatever its scale.
    assert P.inv3_sym_diag(1.0, 1.0, 0.0, 1.0, 0.0, 1.0) == (math.inf,) * 3
