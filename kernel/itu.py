"""ITU-R propagation terms for model version 2 (Numba, plain floats and arrays in and out).

The propagation terms of model version 2, each held to its recommendation's formulas or
published values in tests/test_itu.py.

* ``spherical_earth_first_term_db`` / ``spherical_earth_diffraction_db``: diffraction over a
  smooth spherical earth (ITU-R P.526, the first-term residue series; the spherical-earth loss
  as P.452 and P.1812 use it for the delta-Bullington method).
* ``bullington_db`` and ``delta_bullington_db``: diffraction over a terrain profile (ITU-R P.526
  section 4.5, as in P.1812): Bullington's single equivalent edge on the real profile, plus the
  spherical-earth correction from the smooth profile fitted to it.
* ``clutter_loss_db``: the terminal clutter loss of ITU-R P.2108 section 3.1 (height-gain
  terminal correction model) for one of its clutter types.

Units: distances in km, heights in m, frequencies in MHz (the recommendations' GHz forms are
converted inside), effective earth radius in km.
"""

from __future__ import annotations

import math

from .jit import njit
from .physics import knife_edge_loss_db

SPEED_OF_LIGHT_M_S = 299_792_458.0
#: Ground of average land (P.527 / P.452's "land": relative permittivity 22, conductivity
#: 0.003 S/m); stations and transmitters use vertical polarization.
LAND_PERMITTIVITY = 22.0
LAND_CONDUCTIVITY = 0.003

#: P.2108 section 3.1 clutter types: (representative clutter height R in m, model: 1 the
#: height-gain model of open ground, 2 the diffraction model of buildings and trees).
CLUTTER_OPEN, CLUTTER_TREES, CLUTTER_SUBURBAN, CLUTTER_URBAN, CLUTTER_DENSE_URBAN = range(5)
CLUTTER_TYPES = ((10.0, 1), (15.0, 2), (10.0, 2), (15.0, 2), (20.0, 2))
CLUTTER_NAMES = ("open/rural", "trees/forest", "suburban", "urban", "dense urban")
STREET_WIDTH_M = 27.0  # P.2108's default street width w_s


@njit
def _f_of_x(x):
    """P.526's distance term F(X) of the first-term formula (dB)."""
    if x >= 1.6:
        return 11.0 + 10.0 * math.log10(x) - 17.6 * x
    return -20.0 * math.log10(x) - 5.6488 * x ** 1.425


@njit
def _g_of_y(y, beta, k):
    """P.526's height-gain term G(Y) (dB), B = beta Y, floored at 2 + 20 log10(K)."""
    b = beta * y
    if b > 2.0:
        g = 17.6 * math.sqrt(b - 1.1) - 5.0 * math.log10(b - 1.1) - 8.0
    else:
        g = 20.0 * math.log10(b + 0.1 * b ** 3)
    return max(g, 2.0 + 20.0 * math.log10(k))


@njit
def spherical_earth_first_term_db(d_km, h1_m, h2_m, f_mhz, ae_km,
                                  eps_r=LAND_PERMITTIVITY, sigma=LAND_CONDUCTIVITY,
                                  vertical=True):
    """Diffraction loss (dB) over a smooth earth of radius ``ae_km``, the first term of the
    residue series (P.526 section 3.1.1; P.452's L_dft): -F(X) - G(Y1) - G(Y2)."""
    f_ghz = f_mhz / 1000.0
    k = (0.036 * (ae_km * f_ghz) ** (-1.0 / 3.0)
         * ((eps_r - 1.0) ** 2 + (18.0 * sigma / f_ghz) ** 2) ** -0.25)
    if vertical:
        k *= math.sqrt(eps_r ** 2 + (18.0 * sigma / f_ghz) ** 2)
    k2 = k * k
    beta = (1.0 + 1.6 * k2 + 0.67 * k2 * k2) / (1.0 + 4.5 * k2 + 1.53 * k2 * k2)
    x = 21.88 * beta * (f_ghz / ae_km ** 2) ** (1.0 / 3.0) * d_km
    y_scale = 0.9575 * beta * (f_ghz ** 2 / ae_km) ** (1.0 / 3.0)
    return -_f_of_x(x) - _g_of_y(y_scale * h1_m, beta, k) - _g_of_y(y_scale * h2_m, beta, k)


@njit
def spherical_earth_diffraction_db(d_km, h1_m, h2_m, f_mhz, ae_km):
    """Spherical-earth diffraction loss L_dsph (dB) between antennas ``h1_m`` and ``h2_m`` above
    a smooth earth of radius ``ae_km``: the first-term loss beyond the marginal line-of-sight
    distance; within it, that loss at a modified radius scaled by how far the path clearance
    falls short of 0.552 of the first Fresnel zone (0 when it does not)."""
    wavelength_m = SPEED_OF_LIGHT_M_S / (f_mhz * 1e6)
    d_los = math.sqrt(2.0 * ae_km) * (math.sqrt(0.001 * h1_m) + math.sqrt(0.001 * h2_m))
    if d_km >= d_los:
        return spherical_earth_first_term_db(d_km, h1_m, h2_m, f_mhz, ae_km)
    c = (h1_m - h2_m) / (h1_m + h2_m)
    m = 250.0 * d_km * d_km / (ae_km * (h1_m + h2_m))
    b = 2.0 * math.sqrt((m + 1.0) / (3.0 * m)) * math.cos(
        math.pi / 3.0 + math.acos(1.5 * c * math.sqrt(3.0 * m / (m + 1.0) ** 3)) / 3.0)
    d1 = d_km * (1.0 + b) / 2.0
    d2 = d_km - d1
    h_se = ((h1_m - 500.0 * d1 * d1 / ae_km) * d2 + (h2_m - 500.0 * d2 * d2 / ae_km) * d1) / d_km
    h_req = 17.456 * math.sqrt(d1 * d2 * wavelength_m / d_km)
    if h_se > h_req:
        return 0.0
    a_em = 500.0 * (d_km / (math.sqrt(h1_m) + math.sqrt(h2_m))) ** 2
    loss = spherical_earth_first_term_db(d_km, h1_m, h2_m, f_mhz, a_em)
    if loss < 0.0:
        return 0.0
    return (1.0 - h_se / h_req) * loss


#: Fresnel parameter at which a path clears 0.6 of the first Fresnel zone: v = sqrt(2) h / F1.
V_LINE_OF_SIGHT = -0.6 * math.sqrt(2.0)


@njit
def bullington_loss_db(d_km, hts_m, hrs_m, s_tim, s_rim, q_los, wavelength_m):
    """P.526's Bullington loss (dB) from what a profile pass gathers: the steepest slopes
    ``s_tim`` (from the transmitter) and ``s_rim`` (from the receiver) to the profile's points,
    in m/km, and ``q_los`` = max of v |v| over its points (v the Fresnel parameter of the
    point's clearance above the direct ray). Returns (loss, v of the decisive edge).

    Beyond line of sight the edge is where the two steepest lines meet; within it, the most
    obstructing point. The loss is J(v) plus P.526's correction [1 - exp(-J/6)] (10 + 0.02 d).
    """
    d = d_km
    if s_tim < (hrs_m - hts_m) / d:
        v = math.copysign(math.sqrt(abs(q_los)), q_los) if q_los > -math.inf else -math.inf
    else:
        d_bp = (hrs_m - hts_m + s_rim * d) / (s_tim + s_rim)
        v = ((hts_m + s_tim * d_bp - (hts_m * (d - d_bp) + hrs_m * d_bp) / d)
             * math.sqrt(0.002 * d / (wavelength_m * d_bp * (d - d_bp))))
    luc = knife_edge_loss_db(v)
    return luc + (1.0 - math.exp(-luc / 6.0)) * (10.0 + 0.02 * d), v


@njit
def smooth_earth_bullington(d_km, h1_m, h2_m, f_mhz, ae_km):
    """Bullington over a smooth earth (a continuous profile at height 0), in closed form:
    the steepest line from an antenna h above the sphere touches it at the horizon distance
    sqrt(2 a_e h); within line of sight the edge is the point of largest Fresnel parameter.
    Returns (loss, v) as above."""
    d = d_km
    wavelength_m = SPEED_OF_LIGHT_M_S / (f_mhz * 1e6)
    ce = 500.0 / ae_km
    x_t = min(math.sqrt(h1_m / ce), d)
    x_r = min(math.sqrt(h2_m / ce), d)
    s_tim = ce * (d - x_t) - h1_m / x_t
    s_rim = ce * (d - x_r) - h2_m / x_r
    if s_tim >= (h2_m - h1_m) / d:  # beyond line of sight: the edge needs no search
        return bullington_loss_db(d, h1_m, h2_m, s_tim, s_rim, -math.inf, wavelength_m)
    # Within line of sight: the largest Fresnel parameter along the path, where v(x) rises
    # from -inf at both ends to its one maximum: the root of dv/dx, found by Newton's method
    # kept inside a shrinking bracket (bisection when a step would leave it).
    x = _smooth_v_peak(d, h1_m, h2_m, ce)
    v = _smooth_v(x, d, h1_m, h2_m, ce, wavelength_m)
    return bullington_loss_db(d, h1_m, h2_m, s_tim, s_rim, v * abs(v), wavelength_m)


@njit(inline="always")
def _smooth_v_peak(d, h1_m, h2_m, ce):
    """Where the smooth earth's Fresnel parameter v(x) = c(x) sqrt(k / u) peaks, u = x (d - x)
    and c = ce u - h1 - s x the clearance (s the ray's slope): the root in (0, d) of
    dv/dx ~ f(x) = ce u u' - 2 s u + (h1 + s x) u', which is h1 d > 0 at 0 and -h2 d < 0 at d."""
    s = (h2_m - h1_m) / d
    lo, hi = 0.0, d
    x = 0.5 * d
    for _ in range(60):
        u = x * (d - x)
        du = d - 2.0 * x
        f = ce * u * du - 2.0 * s * u + (h1_m + s * x) * du
        if f > 0.0:
            lo = x
        else:
            hi = x
        df = ce * (du * du - 2.0 * u) - s * du - 2.0 * (h1_m + s * x)
        nxt = x - f / df if df != 0.0 else 0.5 * (lo + hi)
        if not (lo < nxt < hi):
            nxt = 0.5 * (lo + hi)
        if abs(nxt - x) <= 1e-13 * d:
            return nxt
        x = nxt
    return x


@njit(inline="always")
def _smooth_v(x, d, h1_m, h2_m, ce, wavelength_m):
    """Fresnel parameter of the smooth earth's clearance x km from the transmitter."""
    clearance = ce * x * (d - x) - (h1_m * (d - x) + h2_m * x) / d
    return clearance * math.sqrt(0.002 * d / (wavelength_m * x * (d - x)))


@njit
def delta_bullington_combine(d_km, actual_db, h1_m, h2_m, f_mhz, ae_km):
    """P.526's delta-Bullington: the Bullington loss of the real profile (``actual_db``) plus
    the amount by which the spherical-earth loss of the fitted smooth surface exceeds that
    surface's own Bullington loss; ``h1_m``, ``h2_m`` the antennas' heights above that surface
    (at least 1 m: the spherical-earth terms need a positive height)."""
    h1 = max(h1_m, 1.0)
    h2 = max(h2_m, 1.0)
    smooth, _ = smooth_earth_bullington(d_km, h1, h2, f_mhz, ae_km)
    sphere = spherical_earth_diffraction_db(d_km, h1, h2, f_mhz, ae_km)
    return actual_db + max(sphere - smooth, 0.0)


@njit
def smooth_link_db(d_km, h1_m, h2_m, f_mhz, ae_km):
    """Diffraction loss (dB) and decisive Fresnel parameter of a link over a smooth earth at
    sea level, antennas h1 and h2 m above it (at least 1 m): the delta-Bullington method on a
    smooth profile, whose Bullington loss is its own smooth-surface term, so the loss is
    max(Bullington, spherical-earth)."""
    h1 = max(h1_m, 1.0)
    h2 = max(h2_m, 1.0)
    smooth, v = smooth_earth_bullington(d_km, h1, h2, f_mhz, ae_km)
    sphere = spherical_earth_diffraction_db(d_km, h1, h2, f_mhz, ae_km)
    return max(smooth, sphere), v


@njit
def profile_slopes(d_km, h_m, hts_m, hrs_m, wavelength_m, ae_km):
    """(s_tim, s_rim, q_los) of a profile (see ``bullington_loss_db``); the earth's bulge
    d_i (d - d_i) / (2 a_e) is added to each point's height."""
    n = d_km.shape[0]
    d = d_km[n - 1]
    ce = 500.0 / ae_km
    s_tim = s_rim = q_los = -math.inf
    for i in range(1, n - 1):
        di = d_km[i]
        hi = h_m[i] + ce * di * (d - di)
        s_tim = max(s_tim, (hi - hts_m) / di)
        s_rim = max(s_rim, (hi - hrs_m) / (d - di))
        c = hi - (hts_m * (d - di) + hrs_m * di) / d
        q_los = max(q_los, c * abs(c) * 0.002 * d / (wavelength_m * di * (d - di)))
    return s_tim, s_rim, q_los


@njit
def bullington_db(d_km, h_m, hts_m, hrs_m, f_mhz, ae_km):
    """Bullington diffraction loss (dB) of a profile: points at distances ``d_km`` (from 0 to
    the path length, increasing) with ground heights ``h_m``; antennas at ``hts_m`` and
    ``hrs_m`` above sea level at its two ends."""
    wavelength_m = SPEED_OF_LIGHT_M_S / (f_mhz * 1e6)
    s_tim, s_rim, q_los = profile_slopes(d_km, h_m, hts_m, hrs_m, wavelength_m, ae_km)
    return bullington_loss_db(d_km[d_km.shape[0] - 1], hts_m, hrs_m, s_tim, s_rim, q_los,
                              wavelength_m)[0]


@njit
def smooth_surface_heights(d_km, h_m):
    """The heights (m above sea level) at the two ends of the straight smooth surface fitted to
    the profile by least squares (P.1812's fit), each at most the ground height there."""
    n = d_km.shape[0]
    d = d_km[n - 1]
    v1 = 0.0
    v2 = 0.0
    for i in range(1, n):
        dd = d_km[i] - d_km[i - 1]
        v1 += dd * (h_m[i] + h_m[i - 1])
        v2 += dd * (h_m[i] * (2.0 * d_km[i] + d_km[i - 1])
                    + h_m[i - 1] * (d_km[i] + 2.0 * d_km[i - 1]))
    return fitted_ends(d, v1, v2, h_m[0], h_m[n - 1])


@njit(inline="always")
def fitted_ends(d, v1, v2, ground_start, ground_end):
    """The smooth surface's end heights from P.1812's sums v1 = sum dd (h_i + h_i-1) and
    v2 = sum dd (h_i (2 d_i + d_i-1) + h_i-1 (d_i + 2 d_i-1))."""
    start = (2.0 * v1 * d - v2) / (d * d)
    end = (v2 - v1 * d) / (d * d)
    return min(start, ground_start), min(end, ground_end)


@njit
def delta_bullington(d_km, h_m, tx_agl_m, rx_agl_m, f_mhz, ae_km):
    """(loss dB, v) of a terrain profile by P.526's delta-Bullington method (see
    ``delta_bullington_combine``), v the Fresnel parameter of its decisive point (line of
    sight when <= V_LINE_OF_SIGHT). Antenna heights are above the ground at each end. A
    profile with no point between its ends is unobstructed: (0, -inf)."""
    n = d_km.shape[0]
    d = d_km[n - 1]
    hts = h_m[0] + tx_agl_m
    hrs = h_m[n - 1] + rx_agl_m
    if n == 2:
        return 0.0, -math.inf
    wavelength_m = SPEED_OF_LIGHT_M_S / (f_mhz * 1e6)
    s_tim, s_rim, q_los = profile_slopes(d_km, h_m, hts, hrs, wavelength_m, ae_km)
    actual, v = bullington_loss_db(d, hts, hrs, s_tim, s_rim, q_los, wavelength_m)
    start, end = smooth_surface_heights(d_km, h_m)
    return delta_bullington_combine(d, actual, hts - start, hrs - end, f_mhz, ae_km), v


@njit
def delta_bullington_db(d_km, h_m, tx_agl_m, rx_agl_m, f_mhz, ae_km):
    """Diffraction loss (dB) of a terrain profile (``delta_bullington``)."""
    return delta_bullington(d_km, h_m, tx_agl_m, rx_agl_m, f_mhz, ae_km)[0]


@njit
def clutter_loss_db(f_mhz, h_m, clutter_type):
    """P.2108 section 3.1 terminal clutter loss (dB) of an antenna ``h_m`` above ground in
    clutter of type ``clutter_type`` (an index of CLUTTER_TYPES); 0 at or above the type's
    representative height. Valid from 30 MHz to 3 GHz."""
    if clutter_type == CLUTTER_OPEN:
        r = 10.0
        model = 1
    elif clutter_type == CLUTTER_TREES or clutter_type == CLUTTER_URBAN:
        r = 15.0
        model = 2
    elif clutter_type == CLUTTER_SUBURBAN:
        r = 10.0
        model = 2
    else:
        r = 20.0
        model = 2
    if h_m >= r:
        return 0.0
    f_ghz = f_mhz / 1000.0
    if model == 1:
        return -(21.8 + 6.2 * math.log10(f_ghz)) * math.log10(h_m / r)
    h_dif = r - h_m
    theta_deg = math.degrees(math.atan(h_dif / STREET_WIDTH_M))
    nu = 0.342 * math.sqrt(f_ghz) * math.sqrt(h_dif * theta_deg)
    return knife_edge_loss_db(nu) - 6.03
