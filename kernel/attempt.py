"""The per-attempt kernel: one attempt -> one candidate sample with its validity.

The model is described step by step in docs/MODEL.md; the numbered steps below follow it.

``evaluate_attempt`` works on one attempt and writes row ``i`` of the output arrays;
``run_attempts_many`` loops ``prange`` over a batch. Attempts share nothing but read-only inputs,
and every random draw is keyed by (seed, attempt, draw number), so results are byte-identical
for any thread count or batch split.

Inputs are packed by ``kernel.batch.pack_config``: ``fp`` (floats, F-indices below), ``ip``
(ints), the fixed receivers (n x [lat, lon, alt]) with their sines and cosines (n x [sin lat,
cos lat, sin lon, cos lon]), antenna CDFs and antenna tables.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import layout as L
from .jit import njit
from .physics import (diffraction_loss_db, fspl_db, inv3_sym_diag, pattern_loss_db)
from .rng import PHASE, attempt_key, exponential, normal, slot_key, uniform

# fp: float parameters
(FP_FREQ, FP_TX_POWER, FP_MIN_SNR, FP_MAX_GDOP, FP_MAX_CRB, FP_INSIDE, FP_MARGIN, FP_TX_ALT,
 FP_NOISE, FP_BW_DB, FP_LAT0, FP_LAT1, FP_LON0, FP_LON1, FP_ABSORB) = range(15)
N_FP = 15
# ip: integer parameters
(IP_CHUNKS, IP_RANDOM, IP_MIN_COUNT, IP_MAX_COUNT, IP_HEX, IP_MIN_RX, IP_DIFF, IP_TERRAIN,
 IP_ANT, IP_POL, IP_MET, IP_ES) = range(12)
N_IP = 12

DEG = math.pi / 180.0
SQRT3_2 = math.sqrt(3.0) / 2.0
DB_PER_NEPER = 10.0 / math.log(10.0)  # 10 log10(x) = DB_PER_NEPER * ln(x)


@njit(inline="always")
def pick(cdf, u):
    """Index of the category whose cumulative share first exceeds u."""
    for k in range(cdf.shape[0] - 1):
        if u < cdf[k]:
            return k
    return cdf.shape[0] - 1


@njit(inline="always")
def angle_off(a_deg, b_deg):
    """Smallest absolute difference of two azimuths in [-360, 360], in [0, 180].
    (Subtractions instead of fmod: this runs once per directional link.)"""
    d = abs(a_deg - b_deg)
    if d >= 360.0:
        d -= 360.0
    return min(d, 360.0 - d)


@njit
def place_receivers(key, i, fp, ip, rx_fixed, rxf, rx_id):
    """Step 1: write the attempt's receivers into rxf[i, :n, lat/lon/alt]; return n."""
    if ip[IP_RANDOM] == 0:
        n = rx_fixed.shape[0]
        for j in range(n):
            rxf[i, j, L.R_LAT] = rx_fixed[j, 0]
            rxf[i, j, L.R_LON] = rx_fixed[j, 1]
            rxf[i, j, L.R_ALT] = rx_fixed[j, 2]
            rx_id[i, j] = j
        return n
    lo, hi = ip[IP_MIN_COUNT], ip[IP_MAX_COUNT]
    ak = slot_key(key, L.STREAM_ATTEMPT, 0)
    n = min(lo + int(uniform(ak, L.A_RX_COUNT) * (hi - lo + 1)), hi)
    lat0, lat1, lon0, lon1 = fp[FP_LAT0], fp[FP_LAT1], fp[FP_LON0], fp[FP_LON1]
    coslat = math.cos(0.5 * (lat0 + lat1) * DEG)
    width = (lon1 - lon0) * L.KM_PER_DEG * coslat
    height = (lat1 - lat0) * L.KM_PER_DEG
    spacing = math.sqrt(width * height / (n * SQRT3_2))
    cols = max(1, int(math.floor(width / spacing + 0.5)))
    rows = (n + cols - 1) // cols
    for j in range(n):
        pk = slot_key(key, L.STREAM_PLACE, j)
        uy, ux = uniform(pk, L.P_Y), uniform(pk, L.P_X)
        if ip[IP_HEX] == 1:
            r, c = j // cols, j % cols
            x = (c + 0.25 + 0.5 * (r % 2)) * width / cols + 0.1 * spacing * (2.0 * ux - 1.0)
            y = (r + 0.5) * height / rows + 0.1 * spacing * (2.0 * uy - 1.0)
            rxf[i, j, L.R_LAT] = lat0 + y / L.KM_PER_DEG
            rxf[i, j, L.R_LON] = lon0 + x / (L.KM_PER_DEG * coslat)
        else:
            rxf[i, j, L.R_LAT] = lat0 + (lat1 - lat0) * uy
            rxf[i, j, L.R_LON] = lon0 + (lon1 - lon0) * ux
        rxf[i, j, L.R_ALT] = 50.0 + 750.0 * uniform(pk, L.P_ALT)
        rx_id[i, j] = j
    return n


@njit(inline="always")
def window_fading(lk, d_km, shadow, chunks):
    """Shadowing + fast fading of each measurement window, clipped to [-15, +5] dB.

    Returns (mean, standard deviation, min, max) over the windows; the sums are taken about the
    first window so the variance does not cancel. Rician within RICIAN_MAX_KM: power
    (a + b x)^2 + (b y)^2 with x, y ~ N(0, 1), a^2 = K/(K+1), b^2 = 1/(2(K+1)), so the mean
    power is 1. Rayleigh beyond: the power is Exp(1).
    """
    rician = d_km <= L.RICIAN_MAX_KM
    a = b = 0.0
    if rician:
        k_lin = math.exp((6.0 + 4.0 * uniform(lk, L.L_RICE_K)) / DB_PER_NEPER)
        a = math.sqrt(k_lin / (k_lin + 1.0))
        b = math.sqrt(0.5 / (k_lin + 1.0))
    first = s1 = s2 = 0.0
    lo, hi = math.inf, -math.inf
    for w in range(chunks):
        if rician:
            x = a + b * normal(lk, L.L_FADING0 + w)
            y = b * normal(lk, L.L_FADING0 + w + PHASE)
            pw = x * x + y * y
        else:
            pw = exponential(lk, L.L_FADING0 + w)
        sf = min(max(shadow + DB_PER_NEPER * math.log(max(pw, L.FADING_FLOOR)), -15.0), 5.0)
        if w == 0:
            first = sf
        dev = sf - first
        s1 += dev
        s2 += dev * dev
        lo = min(lo, sf)
        hi = max(hi, sf)
    m = s1 / chunks
    return first + m, math.sqrt(max(s2 / chunks - m * m, 0.0)), lo, hi


@njit
def evaluate_attempt(seed, attempt, i, fp, ip, rx_fixed, rx_trig, tx_cdf, rx_cdf, tx_tab, rx_tab,
                     valid, reason, n_rx, n_det, tx_ant, sc, rxf, rx_id, present, rx_ant):
    key = attempt_key(seed, np.uint64(attempt))
    ak = slot_key(key, L.STREAM_ATTEMPT, 0)
    nmax = rxf.shape[1]
    n = place_receivers(key, i, fp, ip, rx_fixed, rxf, rx_id)
    for j in range(n, nmax):  # padding slots
        rxf[i, j, :] = np.nan
        rx_id[i, j] = -1
        present[i, j] = False
        rx_ant[i, j] = -1

    # 2. Transmitter.
    lat_lo, lat_hi = rxf[i, 0, L.R_LAT], rxf[i, 0, L.R_LAT]
    lon_lo, lon_hi = rxf[i, 0, L.R_LON], rxf[i, 0, L.R_LON]
    for j in range(1, n):
        lat_lo = min(lat_lo, rxf[i, j, L.R_LAT])
        lat_hi = max(lat_hi, rxf[i, j, L.R_LAT])
        lon_lo = min(lon_lo, rxf[i, j, L.R_LON])
        lon_hi = max(lon_hi, rxf[i, j, L.R_LON])
    m = 0.0 if uniform(ak, L.A_INSIDE) < fp[FP_INSIDE] else fp[FP_MARGIN]
    tx_lat = lat_lo - m + (lat_hi - lat_lo + 2.0 * m) * uniform(ak, L.A_TX_LAT)
    tx_lon = lon_lo - m + (lon_hi - lon_lo + 2.0 * m) * uniform(ak, L.A_TX_LON)
    tx_alt = fp[FP_TX_ALT]
    duty = 0.8 + 0.2 * uniform(ak, L.A_DUTY)
    on = uniform(ak, L.A_ON) < duty
    q = 0.3 + 0.65 * uniform(ak, L.A_QUALITY)
    jitter = min(max((2.0 * (1.0 - q) + 0.3) * normal(ak, L.A_JITTER), -3.0), 3.0)
    p_eff = fp[FP_TX_POWER] + jitter
    t_type = pick(tx_cdf, uniform(ak, L.A_TX_ANT))
    t_gain = tx_tab[t_type, 0] + (tx_tab[t_type, 1] - tx_tab[t_type, 0]) * uniform(ak, L.A_TX_GAIN)
    t_az = 360.0 * uniform(ak, L.A_TX_AZ)
    t_hbw = 0.5 * (tx_tab[t_type, 2] + (tx_tab[t_type, 3] - tx_tab[t_type, 2]) * uniform(ak, L.A_TX_BW))
    t_f2b = tx_tab[t_type, 4] + (tx_tab[t_type, 5] - tx_tab[t_type, 4]) * uniform(ak, L.A_TX_F2B)
    t_horiz = t_hbw > 0.0 and uniform(ak, L.A_TX_POL) < L.P_HORIZONTAL_DIRECTIONAL
    osc = -50.0 + 100.0 * uniform(ak, L.A_OSC)
    sigma = 3.0 + 3.0 * uniform(ak, L.A_SHADOW_SIGMA)
    tx_ant[i] = t_type

    # Transmitter frame: unit vector and local east / north.
    sp, cp = math.sin(tx_lat * DEG), math.cos(tx_lat * DEG)
    sl, cl = math.sin(tx_lon * DEG), math.cos(tx_lon * DEG)
    tx_x, tx_y, tx_z = cp * cl, cp * sl, sp

    f_mhz = fp[FP_FREQ]
    es_band = L.ES_F_MIN_MHZ <= f_mhz <= L.ES_F_MAX_MHZ
    noise = fp[FP_NOISE]
    min_snr = fp[FP_MIN_SNR]
    chunks = ip[IP_CHUNKS]
    fixed = ip[IP_RANDOM] == 0
    # Sums for the geometry of the detecting receivers: H^T H (GDOP) and sum g g^T (CRB).
    ga = gb = gc = gd = ge = 0.0
    ca = cb = cc = cd = ce = 0.0
    k_det = 0
    snr_sum = 0.0

    # 3. Each link.
    for j in range(n):
        lk = slot_key(key, L.STREAM_LINK, j)
        r_alt = rxf[i, j, L.R_ALT]
        if fixed:  # the network's sines and cosines are computed once per batch
            rsp, rcp, rsl, rcl = rx_trig[j, 0], rx_trig[j, 1], rx_trig[j, 2], rx_trig[j, 3]
        else:
            r_lat, r_lon = rxf[i, j, L.R_LAT], rxf[i, j, L.R_LON]
            rsp, rcp = math.sin(r_lat * DEG), math.cos(r_lat * DEG)
            rsl, rcl = math.sin(r_lon * DEG), math.cos(r_lon * DEG)
        rx_x, rx_y, rx_z = rcp * rcl, rcp * rsl, rsp
        dot = tx_x * rx_x + tx_y * rx_y + tx_z * rx_z
        cx = tx_y * rx_z - tx_z * rx_y
        cy = tx_z * rx_x - tx_x * rx_z
        cz = tx_x * rx_y - tx_y * rx_x
        sin_c = math.sqrt(cx * cx + cy * cy + cz * cz)  # sine of the central angle
        d_m = L.EARTH_RADIUS_M * math.atan2(sin_c, dot)
        d_km = d_m / 1000.0
        # Direction toward the receiver in the transmitter's east-north plane: the receiver's
        # vector less its component along the transmitter's, whose length is sin_c.
        vx, vy, vz = rx_x - dot * tx_x, rx_y - dot * tx_y, rx_z - dot * tx_z
        ue = -sl * vx + cl * vy
        un = -sp * cl * vx - sp * sl * vy + cp * vz
        if sin_c > 0.0:
            ue, un = ue / sin_c, un / sin_c

        rxf[i, j, L.R_DIST] = d_km
        if on:
            # The link budget: every term of step 3 (docs/MODEL.md) but the fast fading.
            fspl = fspl_db(d_km, f_mhz)
            diff = diffraction_loss_db(d_km, tx_alt, r_alt, f_mhz) if ip[IP_DIFF] else 0.0
            terrain = 0.0
            if ip[IP_TERRAIN] and uniform(lk, L.L_BLOCKED) < min(0.05 + d_km / 1000.0, 0.20):
                terrain = 10.0 + 20.0 * uniform(lk, L.L_TERRAIN)
            clutter = 5.0 + 10.0 * uniform(lk, L.L_CLUTTER)
            # One Box-Muller pair gives two independent normals: shadowing and frequency error.
            shadow = sigma * normal(lk, L.L_SHADOW)
            freq_err = L.RX_FREQ_ERROR_HZ * normal(lk, L.L_FREQ_ERR)
            r_type = pick(rx_cdf, uniform(lk, L.L_RX_ANT))
            rx_ant[i, j] = r_type
            directional = rx_tab[r_type, 3] > 0.0
            g_tx = g_rx = 0.0
            if ip[IP_ANT]:
                g_rx = rx_tab[r_type, 0] + (rx_tab[r_type, 1] - rx_tab[r_type, 0]) * uniform(lk, L.L_RX_GAIN)
                g_tx = t_gain
                if t_hbw > 0.0:  # directional transmitter: offset from its boresight
                    bearing = math.atan2(ue, un) / DEG
                    g_tx -= pattern_loss_db(angle_off(bearing, t_az), t_hbw, t_f2b)
                if directional:  # directional receiver: offset of the bearing back to the tx
                    wx, wy, wz = tx_x - dot * rx_x, tx_y - dot * rx_y, tx_z - dot * rx_z
                    back = math.atan2(-rsl * wx + rcl * wy,
                                      -rsp * rcl * wx - rsp * rsl * wy + rcp * wz) / DEG
                    r_az = 360.0 * uniform(lk, L.L_RX_AZ)
                    r_hbw = 0.5 * (rx_tab[r_type, 2] + (rx_tab[r_type, 3] - rx_tab[r_type, 2]) * uniform(lk, L.L_RX_BW))
                    r_f2b = rx_tab[r_type, 4] + (rx_tab[r_type, 5] - rx_tab[r_type, 4]) * uniform(lk, L.L_RX_F2B)
                    g_rx -= pattern_loss_db(angle_off(back, r_az), r_hbw, r_f2b)
            pol = 0.0
            if ip[IP_POL]:
                r_horiz = directional and uniform(lk, L.L_RX_POL) < L.P_HORIZONTAL_DIRECTIONAL
                u_pol = uniform(lk, L.L_POL_LOSS)
                pol = 10.0 + 5.0 * u_pol if r_horiz != t_horiz else 0.5 * u_pol
            absorb = tropo = 0.0
            if ip[IP_MET]:
                absorb = fp[FP_ABSORB] * d_km
                tropo = L.TROPO_MAX_DB * min(d_km / 100.0, 1.0) * (2.0 * uniform(lk, L.L_TROPO) - 1.0)
            es = 0.0
            if (ip[IP_ES] and es_band and L.ES_D_MIN_KM <= d_km <= L.ES_D_MAX_KM
                    and uniform(lk, L.L_ES) < L.ES_PROBABILITY):
                es = L.ES_GAIN_LO + (L.ES_GAIN_HI - L.ES_GAIN_LO) * uniform(lk, L.L_ES_GAIN)
            p_base = (p_eff + g_tx + g_rx - fspl - diff - clutter - terrain - absorb + tropo + es - pol)
            rxf[i, j, L.R_FSPL] = fspl
            rxf[i, j, L.R_DIFF] = diff
            rxf[i, j, L.R_TERRAIN] = terrain
            rxf[i, j, L.R_CLUTTER] = clutter
            rxf[i, j, L.R_SHADOW] = shadow
            rxf[i, j, L.R_ABSORB] = absorb
            rxf[i, j, L.R_TROPO] = tropo
            rxf[i, j, L.R_ES] = es
            rxf[i, j, L.R_POL] = pol
            rxf[i, j, L.R_GTX] = g_tx
            rxf[i, j, L.R_GRX] = g_rx
            mean_sf, rssi_std, lo_sf, hi_sf = window_fading(lk, d_km, shadow, chunks)
            rssi = p_base + mean_sf
            rssi_min, rssi_max = p_base + lo_sf, p_base + hi_sf
            f_off = osc + freq_err
        else:
            # An off transmitter: each receiver hears only its noise floor, and there is no
            # link budget or carrier to report.
            rxf[i, j, L.R_FSPL:] = np.nan
            rx_ant[i, j] = -1
            rssi = rssi_min = rssi_max = noise
            rssi_std = 0.0
            f_off = np.nan
        snr = rssi - noise
        det = on and snr >= min_snr
        present[i, j] = det
        if det:
            k_det += 1
            snr_sum += snr
            ga += ue * ue
            gb += ue * un
            gc += ue
            gd += un * un
            ge += un
            he, hn = L.RSS_C * ue / d_m, L.RSS_C * un / d_m
            ca += he * he
            cb += he * hn
            cc += he
            cd += hn * hn
            ce += hn
        rxf[i, j, L.R_RSSI] = rssi
        rxf[i, j, L.R_RSSI_STD] = rssi_std
        rxf[i, j, L.R_RSSI_MIN] = rssi_min
        rxf[i, j, L.R_RSSI_MAX] = rssi_max
        rxf[i, j, L.R_SNR] = snr
        rxf[i, j, L.R_NOISE] = noise
        rxf[i, j, L.R_PSD] = rssi - fp[FP_BW_DB]
        rxf[i, j, L.R_FOFF] = f_off

    # 4. Geometry of the detecting receivers.
    gdop = hdop = crb = math.inf
    if k_det >= 3:
        q11, q22, q33 = inv3_sym_diag(ga, gb, gc, gd, ge, float(k_det))
        gdop, hdop = math.sqrt(q11 + q22 + q33), math.sqrt(q11 + q22)
        c11, c22, _ = inv3_sym_diag(ca, cb, cc, cd, ce, float(k_det))
        crb = sigma * math.sqrt(c11 + c22)
    mean_snr = snr_sum / k_det if k_det > 0 else np.nan

    # 5. Validation, in order: the first failed rule names the rejection.
    if not on:
        code = L.R_TX_OFF
    elif k_det < ip[IP_MIN_RX]:
        code = L.R_MIN_RECEIVERS
    elif mean_snr < min_snr:
        code = L.R_MIN_SNR
    elif gdop > fp[FP_MAX_GDOP]:
        code = L.R_GDOP
    elif crb > fp[FP_MAX_CRB]:
        code = L.R_CRB
    else:
        code = L.ACCEPTED

    s = sc[i]
    s[L.F_TX_LAT] = tx_lat
    s[L.F_TX_LON] = tx_lon
    s[L.F_TX_ALT] = tx_alt
    s[L.F_P_NOMINAL] = fp[FP_TX_POWER]
    s[L.F_P_EFFECTIVE] = p_eff
    s[L.F_TX_OFFSET] = osc
    s[L.F_SIGMA] = sigma
    s[L.F_MEAN_SNR] = mean_snr
    s[L.F_GDOP] = gdop
    s[L.F_HDOP] = hdop
    s[L.F_CRB] = crb
    s[L.F_CONFIDENCE] = min(max(mean_snr / L.CONFIDENCE_FULL_SNR_DB, 0.0), 1.0) if k_det > 0 else 0.0
    valid[i] = code == L.ACCEPTED
    reason[i] = code
    n_rx[i] = n
    n_det[i] = k_det


@njit(parallel=True)
def run_attempts_many(seed, start, fp, ip, rx_fixed, rx_trig, tx_cdf, rx_cdf, tx_tab, rx_tab,
                      valid, reason, n_rx, n_det, tx_ant, sc, rxf, rx_id, present, rx_ant):
    """Evaluate attempts start .. start + len(valid) - 1 in parallel (one row each)."""
    for i in numba.prange(valid.shape[0]):
        evaluate_attempt(seed, start + i, i, fp, ip, rx_fixed, rx_trig, tx_cdf, rx_cdf, tx_tab, rx_tab,
                         valid, reason, n_rx, n_det, tx_ant, sc, rxf, rx_id, present, rx_ant)
