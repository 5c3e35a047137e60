"""The per-attempt kernel, model version 2: one attempt -> one candidate sample with its validity.

The model is described step by step in docs/MODEL.md; the numbered steps below follow it.

``evaluate_attempt`` works on one attempt and writes row ``i`` of the output arrays (its
scratch allocated, then ``attempt_core``, which takes its scratch from the caller: the CUDA
target, kernel/gpu.py, compiles ``attempt_core`` as a device function from this same source);
``run_attempts_many`` loops ``prange`` over a batch. Attempts share nothing but read-only inputs,
and every random draw is keyed by (seed, attempt, draw number), so results are byte-identical
for any thread count or batch split. What is fixed in the world takes no draw: a fixed station's
antenna, height and clutter (the ``st`` rows), a link's terrain loss (a function of its ends:
the per-station loss maps or the profile itself), the shadowing fields (keyed by the seed).

Inputs are packed by ``kernel.batch.pack_config`` (``KernelInputs`` documents each array).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from . import layout as L
from .itu import V_LINE_OF_SIGHT, smooth_link_db
from .jit import njit
from .physics import fspl_db, inv3_sym_diag, pattern_loss_db
from .rng import PHASE, attempt_key, exponential, normal, slot_key, uniform
from .shadowing import field_basis, fields_at, plane_xy
from .terrain import _height_at, terrain_link_db

# fp: float parameters
(FP_FREQ, FP_TX_POWER, FP_MIN_SNR, FP_MAX_GDOP, FP_MAX_CRB, FP_INSIDE, FP_MARGIN, FP_TX_ALT,
 FP_NOISE, FP_BW_DB, FP_LAT0, FP_LAT1, FP_LON0, FP_LON1, FP_ABSORB, FP_TX_HEIGHT, FP_SIGMA,
 FP_RHO, FP_CRB_S, FP_COS_LAT0, FP_AE_KM, FP_ES_PROB, FP_DIST_STEP) = range(23)
N_FP = 23
# ip: integer parameters
(IP_CHUNKS, IP_RANDOM, IP_MIN_COUNT, IP_MAX_COUNT, IP_HEX, IP_MIN_RX, IP_DIFF, IP_TERRAIN,
 IP_ANT, IP_POL, IP_MET, IP_ES, IP_SHADOW, IP_CLUTTER, IP_FADING, IP_GRID, IP_MAPS,
 IP_DIST) = range(18)
N_IP = 18
# st: one row per fixed station
(S_LAT, S_LON, S_GROUND, S_AGL, S_TYPE, S_GAIN, S_AZ, S_HBW, S_F2B, S_HORIZ, S_CLUTTER,
 S_SIN_LAT, S_COS_LAT, S_SIN_LON, S_COS_LON) = range(15)
N_ST = 15

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
def place_receivers(key, i, fp, ip, st, rx_tab, rx_cdf, tiles, geo, rxf, rx_id, rxa):
    """Step 1: the attempt's receivers. Writes rxf[i, :n, lat/lon/alt] and each receiver's
    position, antenna and clutter into rxa[:n] (columns as ``st``); returns n, or -1 when a
    random receiver falls off the terrain's grid."""
    if ip[IP_RANDOM] == 0:
        n = st.shape[0]
        for j in range(n):
            rxf[i, j, L.R_LAT] = st[j, S_LAT]
            rxf[i, j, L.R_LON] = st[j, S_LON]
            rxf[i, j, L.R_ALT] = st[j, S_GROUND]
            rx_id[i, j] = j
            rxa[j, :] = st[j, :]
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
            lat = lat0 + y / L.KM_PER_DEG
            lon = lon0 + x / (L.KM_PER_DEG * coslat)
        else:
            lat = lat0 + (lat1 - lat0) * uy
            lon = lon0 + (lon1 - lon0) * ux
        if ip[IP_GRID]:
            ground = _height_at(tiles, geo, lat, lon)
            if math.isnan(ground):
                return -1
        else:
            ground = 50.0 + 750.0 * uniform(pk, L.P_ALT)
        rxf[i, j, L.R_LAT] = lat
        rxf[i, j, L.R_LON] = lon
        rxf[i, j, L.R_ALT] = ground
        rx_id[i, j] = j
        # The receiver's antenna, drawn as its position is.
        t = pick(rx_cdf, uniform(pk, L.P_ANT))
        rxa[j, S_LAT], rxa[j, S_LON], rxa[j, S_GROUND] = lat, lon, ground
        rxa[j, S_AGL] = L.RANDOM_RX_HEIGHT_M
        rxa[j, S_TYPE] = t
        rxa[j, S_GAIN] = rx_tab[t, 0] + (rx_tab[t, 1] - rx_tab[t, 0]) * uniform(pk, L.P_GAIN)
        rxa[j, S_HBW] = 0.0
        rxa[j, S_AZ] = rxa[j, S_F2B] = rxa[j, S_HORIZ] = 0.0
        if rx_tab[t, 3] > 0.0:  # directional
            rxa[j, S_AZ] = 360.0 * uniform(pk, L.P_AZ)
            rxa[j, S_HBW] = 0.5 * (rx_tab[t, 2] + (rx_tab[t, 3] - rx_tab[t, 2]) * uniform(pk, L.P_BW))
            rxa[j, S_F2B] = rx_tab[t, 4] + (rx_tab[t, 5] - rx_tab[t, 4]) * uniform(pk, L.P_F2B)
            rxa[j, S_HORIZ] = 1.0 if uniform(pk, L.P_POL) < L.P_HORIZONTAL_DIRECTIONAL else 0.0
        rxa[j, S_CLUTTER] = 0.0
        rxa[j, S_SIN_LAT], rxa[j, S_COS_LAT] = math.sin(lat * DEG), math.cos(lat * DEG)
        rxa[j, S_SIN_LON], rxa[j, S_COS_LON] = math.sin(lon * DEG), math.cos(lon * DEG)
    return n


@njit(inline="always")
def map_lookup(maps, mgeo, j, h, lat, lon):
    """Bilinear value of station j's map h at (lat, lon): maps[j, h] on the lattice mgeo =
    [north, west, dlat, dlon] (the transmitter box, inside it by construction)."""
    grid = maps[j, h]
    rows, cols = grid.shape
    r = min(max((mgeo[0] - lat) / mgeo[2], 0.0), rows - 1.0)
    c = min(max((lon - mgeo[1]) / mgeo[3], 0.0), cols - 1.0)
    r0 = min(int(r), rows - 2)
    c0 = min(int(c), cols - 2)
    fr, fc = r - r0, c - c0
    top = grid[r0, c0] + (grid[r0, c0 + 1] - grid[r0, c0]) * fc
    bottom = grid[r0 + 1, c0] + (grid[r0 + 1, c0 + 1] - grid[r0 + 1, c0]) * fc
    return top + (bottom - top) * fr


@njit(inline="always")
def distance_lookup(table, j, step_km, d_km):
    """Station j's value at distance d_km from its table of values every step_km from 0
    (linear between nodes)."""
    n = table.shape[1]
    x = d_km / step_km
    k = min(int(x), n - 2)
    return table[j, k] + (table[j, k + 1] - table[j, k]) * (x - k)


@njit(inline="always")
def window_powers(lk, los, chunks, fading, power_db):
    """Fast fading of each window (unit mean power) into power_db[:chunks] in dB; returns
    the dB of their LINEAR mean. Rician (K ~ U(6, 10) dB) on line-of-sight links: power
    (a + b x)^2 + (b y)^2 with x, y ~ N(0, 1), a^2 = K/(K+1), b^2 = 1/(2(K+1)); Rayleigh
    otherwise: the power is Exp(1)."""
    if not fading:
        for w in range(chunks):
            power_db[w] = 0.0
        return 0.0
    a = b = 0.0
    if los:
        k_lin = math.exp((6.0 + 4.0 * uniform(lk, L.L_RICE_K)) / DB_PER_NEPER)
        a = math.sqrt(k_lin / (k_lin + 1.0))
        b = math.sqrt(0.5 / (k_lin + 1.0))
    total = 0.0
    for w in range(chunks):
        if los:
            x = a + b * normal(lk, L.L_FADING0 + w)
            y = b * normal(lk, L.L_FADING0 + w + PHASE)
            pw = x * x + y * y
        else:
            pw = exponential(lk, L.L_FADING0 + w)
        pw = max(pw, L.FADING_FLOOR)
        total += pw
        power_db[w] = DB_PER_NEPER * math.log(pw)
    return DB_PER_NEPER * math.log(total / chunks)


@njit
def evaluate_attempt(seed, attempt, i, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf,
                     env_tab, kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo,
                     dist_loss, dist_v, valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf,
                     rx_id, present, rx_ant, off_grid):
    """One attempt on the CPU: its scratch allocated here, the work in ``attempt_core``."""
    rxa, power_db, g, cos_t, sin_t = attempt_scratch(rxf.shape[1], ip[IP_CHUNKS],
                                                     cos_bt.shape[1], kx.shape[0])
    attempt_core(seed, attempt, i, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf,
                 env_tab, kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo,
                 dist_loss, dist_v, valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf,
                 rx_id, present, rx_ant, off_grid, rxa, power_db, g, cos_t, sin_t)


@njit(inline="always")
def attempt_scratch(nmax, chunks, fields, features):
    """An attempt's scratch: receiver rows (nmax x N_ST), window powers (chunks), shadowing
    fields at the transmitter (fields) and the field basis (2 x features)."""
    return (np.empty((nmax, N_ST)), np.empty(chunks), np.empty(fields), np.empty(features),
            np.empty(features))


@njit
def attempt_core(seed, attempt, i, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf,
                 env_tab, kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo,
                 dist_loss, dist_v, valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf,
                 rx_id, present, rx_ant, off_grid, rxa, power_db, g, cos_t, sin_t):
    """The attempt ``attempt`` into row ``i`` of the outputs, with its scratch given (rows of
    a device's workspace, or the CPU's allocation): device code cannot allocate."""
    key = attempt_key(seed, np.uint64(attempt))
    ak = slot_key(key, L.STREAM_ATTEMPT, 0)
    nmax = rxf.shape[1]
    chunks = ip[IP_CHUNKS]
    n = place_receivers(key, i, fp, ip, st, rx_tab, rx_cdf, tiles, geo, rxf, rx_id, rxa)
    off_grid[i] = n < 0
    if n < 0:
        n = 0
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
    tx_ground = math.nan
    tx_alt = fp[FP_TX_ALT]
    if ip[IP_GRID]:
        tx_ground = _height_at(tiles, geo, tx_lat, tx_lon)
        if math.isnan(tx_ground):
            off_grid[i] = True
        tx_alt = tx_ground + fp[FP_TX_HEIGHT]
    duty = 0.8 + 0.2 * uniform(ak, L.A_DUTY)
    on = uniform(ak, L.A_ON) < duty and not off_grid[i]
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
    env = pick(env_cdf, uniform(ak, L.A_TX_CLUTTER))
    tx_clutter = env_tab[env, 0] if ip[IP_CLUTTER] else 0.0
    # With a terrain the profile takes the transmitter at its surroundings' representative
    # clutter height (P.1812), and P.2108's correction above brings it down to its own.
    tx_profile_agl = env_tab[env, 1]
    tx_ant[i] = t_type
    tx_env[i] = env

    # Transmitter frame: unit vector and local east / north.
    sp, cp = math.sin(tx_lat * DEG), math.cos(tx_lat * DEG)
    sl, cl = math.sin(tx_lon * DEG), math.cos(tx_lon * DEG)
    tx_x, tx_y, tx_z = cp * cl, cp * sl, sp

    # The shadowing fields at the transmitter: the shared one (g[0]) and each fixed station's.
    shadow_on = ip[IP_SHADOW] != 0 and on
    g_shared = 0.0
    if shadow_on:
        x_m, y_m = plane_xy(tx_lat, tx_lon, fp[FP_COS_LAT0])
        field_basis(kx, ky, x_m, y_m, cos_t, sin_t)
        fields_at(cos_bt, sin_bt, cos_t, sin_t, g)
        g_shared = g[0]
    sigma, rho = fp[FP_SIGMA], fp[FP_RHO]
    w_shared, w_own = sigma * math.sqrt(rho), sigma * math.sqrt(1.0 - rho)

    f_mhz = fp[FP_FREQ]
    ae_km = fp[FP_AE_KM]
    noise = fp[FP_NOISE]
    min_snr = fp[FP_MIN_SNR]
    fixed = ip[IP_RANDOM] == 0
    # Sums for the geometry of the detecting receivers: H^T H (GDOP) and sum g g^T (CRB).
    ga = gb = gc = gd = ge = 0.0
    ca = cb = cc = cd = ce = 0.0
    k_det = 0
    snr_sum = 0.0

    # 3. Each link.
    for j in range(n):
        lk = slot_key(key, L.STREAM_LINK, j)
        rsp, rcp, rsl, rcl = rxa[j, S_SIN_LAT], rxa[j, S_COS_LAT], rxa[j, S_SIN_LON], rxa[j, S_COS_LON]
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
            fspl = fspl_db(d_km, f_mhz)
            # Diffraction and line of sight: the station's loss map (terrain) or distance
            # table (smooth earth), the link's own terrain profile, or the smooth earth.
            r_ground, r_agl = rxa[j, S_GROUND], rxa[j, S_AGL]
            if d_km < L.MIN_PATH_KM:
                diff, v = 0.0, -math.inf
            elif ip[IP_MAPS]:
                h = int(env_tab[env, 2])
                diff = map_lookup(maps_loss, mgeo, j, h, tx_lat, tx_lon)
                v = map_lookup(maps_v, mgeo, j, h, tx_lat, tx_lon)
            elif ip[IP_DIST]:
                diff = distance_lookup(dist_loss, j, fp[FP_DIST_STEP], d_km)
                v = distance_lookup(dist_v, j, fp[FP_DIST_STEP], d_km)
            elif ip[IP_GRID] and ip[IP_TERRAIN]:
                diff, v, ok = terrain_link_db(tiles, geo, tx_lat, tx_lon, tx_ground,
                                              tx_profile_agl, rxa[j, S_LAT], rxa[j, S_LON],
                                              r_ground, r_agl, d_km, f_mhz, ae_km)
                if not ok:
                    off_grid[i] = True
                    diff, v = 0.0, -math.inf
            else:
                diff, v = smooth_link_db(d_km, tx_alt, r_ground + r_agl, f_mhz, ae_km)
            los = v <= V_LINE_OF_SIGHT
            if not ip[IP_DIFF]:
                diff = 0.0
            rx_clutter = rxa[j, S_CLUTTER] if ip[IP_CLUTTER] else 0.0
            shadow = 0.0
            if shadow_on:
                if fixed:
                    own = g[j + 1]
                else:  # a random receiver's own field is seen at one point: a normal
                    own = normal(lk, L.L_OWN_SHADOW)
                shadow = w_shared * g_shared + w_own * own
            freq_err = L.RX_FREQ_ERROR_HZ * normal(lk, L.L_FREQ_ERR)
            g_tx = g_rx = 0.0
            r_hbw = rxa[j, S_HBW]
            if ip[IP_ANT]:
                g_rx = rxa[j, S_GAIN]
                g_tx = t_gain
                if t_hbw > 0.0:  # directional transmitter: offset from its boresight
                    bearing = math.atan2(ue, un) / DEG
                    g_tx -= pattern_loss_db(angle_off(bearing, t_az), t_hbw, t_f2b)
                if r_hbw > 0.0:  # directional receiver: offset of the bearing back to the tx
                    wx, wy, wz = tx_x - dot * rx_x, tx_y - dot * rx_y, tx_z - dot * rx_z
                    back = math.atan2(-rsl * wx + rcl * wy,
                                      -rsp * rcl * wx - rsp * rsl * wy + rcp * wz) / DEG
                    g_rx -= pattern_loss_db(angle_off(back, rxa[j, S_AZ]), r_hbw,
                                            rxa[j, S_F2B])
            pol = 0.0
            if ip[IP_POL]:
                u_pol = uniform(lk, L.L_POL_LOSS)
                r_horiz = rxa[j, S_HORIZ] > 0.5
                pol = 10.0 + 5.0 * u_pol if r_horiz != t_horiz else 0.5 * u_pol
            absorb = tropo = 0.0
            if ip[IP_MET]:
                absorb = fp[FP_ABSORB] * d_km
                tropo = L.TROPO_MAX_DB * min(d_km / 100.0, 1.0) * (2.0 * uniform(lk, L.L_TROPO) - 1.0)
            es = 0.0
            if (ip[IP_ES] and L.ES_D_MIN_KM <= d_km <= L.ES_D_MAX_KM
                    and uniform(lk, L.L_ES) < fp[FP_ES_PROB]):
                es = L.ES_GAIN_LO + (L.ES_GAIN_HI - L.ES_GAIN_LO) * uniform(lk, L.L_ES_GAIN)
            p_base = (p_eff + g_tx + g_rx - fspl - diff - tx_clutter - rx_clutter + shadow
                      - absorb + tropo + es - pol)
            fading = window_powers(lk, los, chunks, ip[IP_FADING], power_db)
            s1 = s2 = 0.0
            lo_db, hi_db = math.inf, -math.inf
            for w in range(chunks):  # spread of the windows' dB values about their mean
                dev = power_db[w] - power_db[0]
                s1 += dev
                s2 += dev * dev
                lo_db = min(lo_db, power_db[w])
                hi_db = max(hi_db, power_db[w])
            mean_dev = s1 / chunks
            rssi_std = math.sqrt(max(s2 / chunks - mean_dev * mean_dev, 0.0))
            rssi = p_base + fading
            rssi_min, rssi_max = p_base + lo_db, p_base + hi_db
            f_off = osc + freq_err
            rxf[i, j, L.R_FSPL] = fspl
            rxf[i, j, L.R_DIFF] = diff
            rxf[i, j, L.R_RX_CLUTTER] = rx_clutter
            rxf[i, j, L.R_SHADOW] = shadow
            rxf[i, j, L.R_FADING] = fading
            rxf[i, j, L.R_ABSORB] = absorb
            rxf[i, j, L.R_TROPO] = tropo
            rxf[i, j, L.R_ES] = es
            rxf[i, j, L.R_POL] = pol
            rxf[i, j, L.R_GTX] = g_tx
            rxf[i, j, L.R_GRX] = g_rx
            rxf[i, j, L.R_LOS] = 1.0 if los else 0.0
            rx_ant[i, j] = int(rxa[j, S_TYPE])
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
        crb = fp[FP_CRB_S] * math.sqrt(c11 + c22)
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
    s[L.F_SIGMA] = fp[FP_CRB_S]
    s[L.F_MEAN_SNR] = mean_snr
    s[L.F_GDOP] = gdop
    s[L.F_HDOP] = hdop
    s[L.F_CRB] = crb
    s[L.F_CONFIDENCE] = min(max(mean_snr / L.CONFIDENCE_FULL_SNR_DB, 0.0), 1.0) if k_det > 0 else 0.0
    s[L.F_TX_GROUND] = tx_ground
    s[L.F_TX_CLUTTER] = tx_clutter
    valid[i] = code == L.ACCEPTED
    reason[i] = code
    n_rx[i] = n
    n_det[i] = k_det


@njit(parallel=True)
def run_attempts_many(seed, start, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab, env_cdf, env_tab,
                      kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss, maps_v, mgeo, dist_loss,
                      dist_v, valid, reason, n_rx, n_det, tx_ant, tx_env, sc, rxf, rx_id,
                      present, rx_ant, off_grid):
    """Evaluate attempts start .. start + len(valid) - 1 in parallel (one row each)."""
    for i in numba.prange(valid.shape[0]):
        evaluate_attempt(seed, start + i, i, fp, ip, st, tx_cdf, rx_cdf, tx_tab, rx_tab,
                         env_cdf, env_tab, kx, ky, cos_bt, sin_bt, tiles, geo, maps_loss,
                         maps_v, mgeo, dist_loss, dist_v, valid, reason, n_rx, n_det, tx_ant,
                         tx_env, sc, rxf, rx_id, present, rx_ant, off_grid)


@njit(parallel=True)
def build_distance_tables(st, tx_alt, f_mhz, ae_km, step_km, dist_loss, dist_v):
    """Each fixed station's smooth-earth diffraction loss and Fresnel parameter from a
    transmitter at tx_alt (m above sea level) at distances 0, step_km, 2 step_km, ...
    (from MIN_PATH_KM at the first node): dist_*[station, node]."""
    n_st, n = dist_loss.shape
    for task in numba.prange(n_st * n):
        j, k = task // n, task % n
        d_km = max(k * step_km, L.MIN_PATH_KM)
        loss, v = smooth_link_db(d_km, tx_alt, st[j, S_GROUND] + st[j, S_AGL], f_mhz, ae_km)
        dist_loss[j, k] = loss
        dist_v[j, k] = v


@njit(parallel=True)
def build_loss_maps(st, env_heights, tiles, geo, mgeo, f_mhz, ae_km, maps_loss, maps_v, ok):
    """Each fixed station's diffraction loss and decisive Fresnel parameter from a transmitter
    at every node of the lattice mgeo, for each profile height of env_heights (m above the
    transmitter's ground): maps[station, height, row, col]. ok[...] False where a profile
    leaves the grid. Rows of nodes run in parallel."""
    n_st, n_h, rows, cols = maps_loss.shape
    for task in numba.prange(n_st * n_h * rows):
        j = task // (n_h * rows)
        h = (task // rows) % n_h
        r = task % rows
        lat = mgeo[0] - r * mgeo[2]
        sp, cp = math.sin(lat * DEG), math.cos(lat * DEG)
        rx_x = st[j, S_COS_LAT] * st[j, S_COS_LON]
        rx_y = st[j, S_COS_LAT] * st[j, S_SIN_LON]
        rx_z = st[j, S_SIN_LAT]
        for c in range(cols):
            lon = mgeo[1] + c * mgeo[3]
            tx_x, tx_y, tx_z = cp * math.cos(lon * DEG), cp * math.sin(lon * DEG), sp
            dot = tx_x * rx_x + tx_y * rx_y + tx_z * rx_z
            cx = tx_y * rx_z - tx_z * rx_y
            cy = tx_z * rx_x - tx_x * rx_z
            cz = tx_x * rx_y - tx_y * rx_x
            d_km = L.EARTH_RADIUS_M * math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), dot) / 1000.0
            ground = _height_at(tiles, geo, lat, lon)
            if math.isnan(ground):
                ok[j, h, r, c] = False
                continue
            if d_km < L.MIN_PATH_KM:
                loss, v, good = 0.0, -math.inf, True
            else:
                loss, v, good = terrain_link_db(tiles, geo, lat, lon, ground, env_heights[h],
                                                st[j, S_LAT], st[j, S_LON], st[j, S_GROUND],
                                                st[j, S_AGL], d_km, f_mhz, ae_km)
            ok[j, h, r, c] = good
            maps_loss[j, h, r, c] = loss
            # v is interpolated between nodes: keep it finite (a clear path's -inf is any
            # value well below the line-of-sight threshold).
            maps_v[j, h, r, c] = max(v, -100.0)
