"""The NumPy reference of one attempt: slow, plain, written to be read. The tests hold the
Numba kernel (kernel.attempt) to it attempt by attempt.

It follows the steps of docs/MODEL.md on whole arrays: axis 0 is the attempt, axis 1 the
receiver slot, axis 2 the measurement window. It shares with the kernel only what is part of the data contract
(the draw layout and the constants in kernel.layout); the maths is written independently: the
hash in NumPy integer arrays, haversine distances and bearing formulas instead of the kernel's
unit vectors, (a + b x)^2 + (b y)^2 for the Rician power, np.linalg.inv for the geometry.
"""

from __future__ import annotations

import math

import numpy as np

from . import layout as L
from .batch import AttemptBatch, antenna_cdf, check_range
from .config import GenerationConfig
from .defaults import RX_ANTENNAS, TX_ANTENNAS
from .rng import PHASE, RETRY, TAIL, ZIG_F, ZIG_K, ZIG_R, ZIG_W, ZN_F, ZN_K, ZN_R, ZN_W

U64 = np.uint64
GOLDEN = U64(0x9E3779B97F4A7C15)
MIX1, MIX2 = U64(0xBF58476D1CE4E5B9), U64(0x94D049BB133111EB)
SEED_SALT, DRAW_SALT = U64(0x5DEECE66D1F2A3B7), U64(0x2545F4914F6CDD1D)


# ---- random numbers: (seed, attempt, (stream, slot, sub)) -> bits --------------------------
def mix64(z):
    z = (z ^ (z >> U64(30))) * MIX1
    z = (z ^ (z >> U64(27))) * MIX2
    return z ^ (z >> U64(31))


def attempt_keys(seed, attempts):
    seed_key = mix64(np.array([seed], dtype=U64) ^ SEED_SALT)  # 1-d: arrays wrap silently
    return mix64(seed_key + attempts * GOLDEN)


def slot_keys(keys, stream, slots):
    """keys (N,) x slots (S,) -> (N, S); a scalar slot gives (N,)."""
    ids = (U64(stream) << U64(8)) | np.atleast_1d(np.asarray(slots, dtype=U64))
    salt = mix64(ids * GOLDEN + DRAW_SALT)
    if not np.ndim(slots):
        salt = salt[0]
    return mix64(keys[:, None] ^ salt[None, :] if np.ndim(slots) else keys ^ salt)


def bits(skeys, sub):
    return mix64(skeys + np.asarray(sub, dtype=U64) * GOLDEN + GOLDEN)


def uniform(skeys, sub):
    return ((bits(skeys, sub) >> U64(11)).astype(np.float64) + 0.5) * 2.0 ** -53


def exponential(skeys, sub):
    """Exp(1) by the same 256-layer ziggurat as the kernel (tables from kernel.rng, part of the
    data contract); the rare wedge and tail cases are done one by one below."""
    sub = np.broadcast_to(np.asarray(sub, dtype=U64), np.shape(skeys))
    b = bits(skeys, sub)
    layer = (b & U64(255)).astype(np.intp)
    u = (b >> U64(11)).astype(np.float64)
    out = u * ZIG_W[layer]
    for idx in zip(*np.nonzero(u >= ZIG_K[layer])):
        out[idx] = exponential_rare(skeys[idx], int(sub[idx]), int(layer[idx]), float(u[idx]))
    return out


def exponential_rare(skey, sub, layer, u):
    """Marsaglia & Tsang's wedge test and tail, with retry n drawing sub + 128 n (+ 64)."""
    x = 0.0
    for n in range(1, 10_000):
        uni = float(uniform(np.asarray([skey]), sub + RETRY * n)[0])
        if layer == 0:
            return ZIG_R - math.log(uni)
        x = u * ZIG_W[layer]
        if ZIG_F[layer] + uni * (ZIG_F[layer - 1] - ZIG_F[layer]) < math.exp(-x):
            return x
        word = int(bits(np.asarray([skey]), sub + RETRY * n + PHASE)[0])
        layer, u = word & 255, float(word >> 11)
        if u < ZIG_K[layer]:
            return u * ZIG_W[layer]
    return x


def normal(skeys, sub):
    """N(0, 1) by the same 128-layer ziggurat as the kernel; rare cases one by one below."""
    sub = np.broadcast_to(np.asarray(sub, dtype=U64), np.shape(skeys))
    b = bits(skeys, sub)
    layer = (b & U64(127)).astype(np.intp)
    v = (b.view(np.int64) >> 11).astype(np.float64)  # signed top 53 bits
    out = v * ZN_W[layer]
    for idx in zip(*np.nonzero(np.abs(v) >= ZN_K[layer])):
        out[idx] = normal_rare(skeys[idx], int(sub[idx]), int(layer[idx]), float(v[idx]))
    return out


def normal_rare(skey, sub, layer, v):
    """Wedge test, or Marsaglia's tail method beyond ZN_R, with the kernel's retry subs."""
    def uni(s):
        return float(uniform(np.asarray([skey]), s)[0])
    x = 0.0
    for n in range(1, 10_000):
        x = v * ZN_W[layer]
        if layer == 0:
            for m in range(1, 10_000):
                tx = -math.log(uni(sub + RETRY * n + TAIL * m)) / ZN_R
                ty = -math.log(uni(sub + RETRY * n + TAIL * m + PHASE))
                if ty + ty >= tx * tx:
                    break
            return ZN_R + tx if v > 0 else -ZN_R - tx
        if ZN_F[layer] + uni(sub + RETRY * n) * (ZN_F[layer - 1] - ZN_F[layer]) < math.exp(-0.5 * x * x):
            return x
        word = bits(np.asarray([skey]), sub + RETRY * n + PHASE)
        layer, v = int(word[0] & U64(127)), float(word.view(np.int64)[0] >> 11)
        if abs(v) < ZN_K[layer]:
            return v * ZN_W[layer]
    return x


# ---- physics ---------------------------------------------------------------------------------
def knife_edge_db(v):
    """ITU-R P.526 J(v), 0 at and below v = -0.78."""
    with np.errstate(invalid="ignore"):
        j = 6.9 + 20.0 * np.log10(np.sqrt((v - 0.1) ** 2 + 1.0) + v - 0.1)
    return np.where(v > -0.78, j, 0.0)


def gaseous_db_per_km(f_mhz):
    f = f_mhz / 1000.0
    oxygen = (7.2 / (f ** 2 + 0.34) + 0.62 / ((54.0 - f) ** 1.16 + 0.83)) * f ** 2 * 1e-3
    rho = 7.5
    water = (0.05 + 0.0021 * rho + 3.6 / ((f - 22.2) ** 2 + 8.5) + 10.6 / ((f - 183.3) ** 2 + 9.0)
             + 8.9 / ((f - 325.4) ** 2 + 26.3)) * f ** 2 * rho * 1e-4
    return oxygen + water


def smooth_diffraction(d_km, h1, h2, f_mhz, ae_km):
    """(loss, v) of links over the smooth earth, one by one with the scalar ITU-R terms of
    kernel.itu (held to their recommendations in tests/test_itu.py)."""
    from .itu import smooth_link_db
    loss, v = np.zeros_like(d_km), np.full_like(d_km, -np.inf)
    for idx in zip(*np.nonzero(np.isfinite(d_km) & (d_km >= L.MIN_PATH_KM))):
        loss[idx], v[idx] = smooth_link_db(float(d_km[idx]), float(h1[idx]), float(h2[idx]),
                                           f_mhz, ae_km)
    return loss, v


def terrain_diffraction(cfg, grid, st, env, tx_lat, tx_lon, tx_ground, rx_lat, rx_lon,
                        rx_ground, agl, d_km, ae_km):
    """(loss, v) of links over the terrain, where d_km is finite and at least MIN_PATH_KM.
    Random receivers: each link's own readable profile (kernel.terrain.link_diffraction), the
    transmitter at its clutter environment's profile height. Fixed stations: their loss maps
    read bilinearly at the transmitter (the maps' nodes are each a link's profile loss, held
    to link_diffraction in tests/test_model2.py)."""
    from .batch import clutter_environments, loss_maps, transmitter_box
    from .terrain import bilinear, link_diffraction
    _, env_tab, profile_heights = clutter_environments(cfg)
    loss, v = np.zeros_like(d_km), np.full_like(d_km, -np.inf)
    with np.errstate(invalid="ignore"):
        links = np.isfinite(d_km) & (d_km >= L.MIN_PATH_KM)
    if st is None:
        for n, j in zip(*np.nonzero(links)):
            loss[n, j], v[n, j] = link_diffraction(
                grid, tx_lat[n], tx_lon[n], tx_ground[n], env_tab[env[n], 1], rx_lat[n, j],
                rx_lon[n, j], rx_ground[n, j], agl[n, j], cfg.frequency_mhz, ae_km)
        return loss, v
    maps_loss, maps_v, mgeo = loss_maps(grid, st, profile_heights, transmitter_box(cfg),
                                        cfg.frequency_mhz, ae_km)
    rows = (mgeo[0] - tx_lat) / mgeo[2]
    cols = (tx_lon - mgeo[1]) / mgeo[3]
    level = env_tab[env, 2].astype(int)
    for j in range(st.shape[0]):
        for h in np.unique(level):
            pick = links[:, j] & (level == h)
            loss[pick, j] = bilinear(maps_loss[j, h], rows[pick], cols[pick])
            v[pick, j] = bilinear(maps_v[j, h], rows[pick], cols[pick])
    return loss, v


def station_distance_diffraction(cfg, st, d_km, ae_km):
    """(loss, v) of fixed stations' links over the smooth earth, where d_km is finite and at
    least MIN_PATH_KM: each station's table by distance (kernel.batch.distance_tables, whose
    nodes are smooth_link_db's values, tested in tests/test_model2.py), read linearly."""
    from .batch import DIST_STEP_KM, distance_tables
    loss_table, v_table = distance_tables(st, cfg, ae_km)
    loss, v = np.zeros_like(d_km), np.full_like(d_km, -np.inf)
    with np.errstate(invalid="ignore"):
        links = np.isfinite(d_km) & (d_km >= L.MIN_PATH_KM)
    n, j = np.nonzero(links)
    x = d_km[n, j] / DIST_STEP_KM
    k = np.minimum(x.astype(int), loss_table.shape[1] - 2)
    for out, table in ((loss, loss_table), (v, v_table)):
        out[n, j] = table[j, k] + (table[j, k + 1] - table[j, k]) * (x - k)
    return loss, v


def raise_off_grid(grid):
    from .terrain import TerrainError
    raise TerrainError(f"a transmitter or receiver lies off the terrain's grid "
                       f"{grid.bounds_text()}")


def azimuth_offset(a, b):
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def pattern_db(offset, half_bw, f2b):
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.minimum(3.0 * (offset / half_bw) ** 2, f2b)
    return np.where(half_bw > 0.0, loss, 0.0)


def inverse_diagonal(a, ok):
    """Diagonals of inv(a) for the stacked 3x3 matrices where ok (non-singular); +inf elsewhere."""
    out = np.full(a.shape[:2], np.inf)
    det = np.linalg.det(a)
    diag_product = a[:, 0, 0] * a[:, 1, 1] * a[:, 2, 2]
    ok = ok & (det > L.SINGULAR_RTOL * diag_product)
    if ok.any():
        out[ok] = np.diagonal(np.linalg.inv(a[ok]), axis1=1, axis2=2)
    return out


def shadowing_fields(seed, stations, length_m, tx_lat, tx_lon, lat0):
    """The fields g_f at each transmitter, (N, stations + 1), with NumPy's cos: the dataset's
    frequencies and phases (kernel.shadowing.station_fields, part of the data contract)."""
    from .shadowing import station_fields
    kx, ky, cos_b, sin_b = station_fields(seed, stations, length_m)
    phase = np.arctan2(sin_b, cos_b)
    x = 6_371_000.0 * np.radians(tx_lon) * math.cos(math.radians(lat0))
    y = 6_371_000.0 * np.radians(tx_lat)
    theta = x[:, None] * kx[None, :] + y[:, None] * ky[None, :]  # (N, M)
    return math.sqrt(2.0 / kx.size) * np.cos(theta[:, None, :] + phase[None, :, :]).sum(axis=2)


# ---- the attempt -----------------------------------------------------------------------------
def run_attempts(config, seed: int, start: int, count: int, threads=None,
                 terrain=None) -> AttemptBatch:
    """Same contract as kernel.run_attempts (``threads`` is ignored)."""
    from .batch import clutter_environments, crb_sigma_db, reference_latitude, station_rows
    from .config import ConfigError
    from . import attempt as K
    cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
    check_range(seed, start, count)
    if (cfg.terrain is None) != (terrain is None):
        raise ConfigError("terrain", "pass the grid of the terrain the configuration names")
    grid = terrain
    N, M, W = count, cfg.max_receivers, cfg.num_chunks
    slots = np.arange(M)
    out = AttemptBatch.empty(N, M)
    out.attempt_index[:] = np.arange(start, start + N)
    key = attempt_keys(seed, np.arange(start, start + N, dtype=U64))
    ak = slot_keys(key, L.STREAM_ATTEMPT, 0)
    rx_tab = np.array(L.RX_ANTENNA_TABLE)

    # 1. Receivers (N, M), NaN beyond each attempt's count, with their antennas.
    st = None
    if not cfg.use_random_receivers:
        st = station_rows(cfg, grid)
        n_rx = np.full(N, M)
        rx_lat, rx_lon, rx_alt = (np.broadcast_to(st[:, k], (N, M)).copy()
                                  for k in (K.S_LAT, K.S_LON, K.S_GROUND))
        agl, r_type, g_rx_own, r_az, r_hbw, r_f2b, r_horiz, r_clutter = (
            np.broadcast_to(st[:, k], (N, M)).copy() for k in (
                K.S_AGL, K.S_TYPE, K.S_GAIN, K.S_AZ, K.S_HBW, K.S_F2B, K.S_HORIZ, K.S_CLUTTER))
        r_type = r_type.astype(int)
        r_horiz = r_horiz > 0.5
    else:
        lo, hi = cfg.min_receivers_count, cfg.max_receivers_count
        n_rx = np.minimum(lo + np.floor(uniform(ak, L.A_RX_COUNT) * (hi - lo + 1)).astype(int), hi)
        pk = slot_keys(key, L.STREAM_PLACE, slots)
        uy, ux = uniform(pk, L.P_Y), uniform(pk, L.P_X)
        lat0, lat1, lon0, lon1 = cfg.area_lat_min, cfg.area_lat_max, cfg.area_lon_min, cfg.area_lon_max
        if cfg.receiver_placement == "hexagonal":
            # Offset rows of a lattice sized so n points fill the area, measured in km with
            # the longitude scale of the middle latitude; jitter +-10 % of the spacing.
            coslat = math.cos(math.radians((lat0 + lat1) / 2.0))
            width = (lon1 - lon0) * L.KM_PER_DEG * coslat
            height = (lat1 - lat0) * L.KM_PER_DEG
            spacing = np.sqrt(width * height / (n_rx * (math.sqrt(3.0) / 2.0)))[:, None]
            cols = np.maximum(1, np.floor(width / spacing + 0.5).astype(int))
            rows = (n_rx[:, None] + cols - 1) // cols
            row, col = slots[None, :] // cols, slots[None, :] % cols
            x = (col + 0.25 + 0.5 * (row % 2)) * width / cols + 0.1 * spacing * (2 * ux - 1)
            y = (row + 0.5) * height / rows + 0.1 * spacing * (2 * uy - 1)
            rx_lat, rx_lon = lat0 + y / L.KM_PER_DEG, lon0 + x / (L.KM_PER_DEG * coslat)
        else:
            rx_lat, rx_lon = lat0 + (lat1 - lat0) * uy, lon0 + (lon1 - lon0) * ux
        if grid is None:
            rx_alt = 50.0 + 750.0 * uniform(pk, L.P_ALT)
        else:  # the ground under each receiver
            rx_alt = grid.heights_at(rx_lat, rx_lon)
            if np.isnan(rx_alt[slots[None, :] < n_rx[:, None]]).any():
                raise_off_grid(grid)
        agl = np.full((N, M), L.RANDOM_RX_HEIGHT_M)
        r_type = np.searchsorted(antenna_cdf(cfg.rx_antenna_dist, RX_ANTENNAS)[:-1],
                                 uniform(pk, L.P_ANT), side="right")
        rt = rx_tab[r_type]
        g_rx_own = rt[..., 0] + (rt[..., 1] - rt[..., 0]) * uniform(pk, L.P_GAIN)
        directional = rt[..., 3] > 0
        r_az = np.where(directional, 360.0 * uniform(pk, L.P_AZ), 0.0)
        r_hbw = np.where(directional, (rt[..., 2] + (rt[..., 3] - rt[..., 2]) * uniform(pk, L.P_BW)) / 2, 0.0)
        r_f2b = np.where(directional, rt[..., 4] + (rt[..., 5] - rt[..., 4]) * uniform(pk, L.P_F2B), 0.0)
        r_horiz = directional & (uniform(pk, L.P_POL) < L.P_HORIZONTAL_DIRECTIONAL)
        r_clutter = np.zeros((N, M))
    present_slot = slots[None, :] < n_rx[:, None]
    for arr in (rx_lat, rx_lon, rx_alt):
        arr[~present_slot] = np.nan

    # 2. Transmitter.
    margin = np.where(uniform(ak, L.A_INSIDE) < cfg.inside_ratio, 0.0, cfg.margin_deg)
    lat_lo, lat_hi = np.nanmin(rx_lat, axis=1) - margin, np.nanmax(rx_lat, axis=1) + margin
    lon_lo, lon_hi = np.nanmin(rx_lon, axis=1) - margin, np.nanmax(rx_lon, axis=1) + margin
    tx_lat = lat_lo + (lat_hi - lat_lo) * uniform(ak, L.A_TX_LAT)
    tx_lon = lon_lo + (lon_hi - lon_lo) * uniform(ak, L.A_TX_LON)
    tx_alt = np.full(N, cfg.tx_altitude_m)
    tx_ground = np.full(N, np.nan)
    if grid is not None:  # the transmitter stands tx_height_m above the ground
        tx_ground = grid.heights_at(tx_lat, tx_lon)
        if np.isnan(tx_ground).any():
            raise_off_grid(grid)
        tx_alt = tx_ground + cfg.tx_height_m
    on = uniform(ak, L.A_ON) < 0.8 + 0.2 * uniform(ak, L.A_DUTY)
    q = 0.3 + 0.65 * uniform(ak, L.A_QUALITY)
    p_eff = cfg.tx_power_dbm + np.clip((2.0 * (1.0 - q) + 0.3) * normal(ak, L.A_JITTER), -3, 3)
    tx_tab = np.array(L.TX_ANTENNA_TABLE)
    t_type = np.searchsorted(antenna_cdf(cfg.tx_antenna_dist, TX_ANTENNAS)[:-1],
                             uniform(ak, L.A_TX_ANT), side="right")
    t = tx_tab[t_type]
    t_gain = t[:, 0] + (t[:, 1] - t[:, 0]) * uniform(ak, L.A_TX_GAIN)
    t_az = 360.0 * uniform(ak, L.A_TX_AZ)
    t_hbw = (t[:, 2] + (t[:, 3] - t[:, 2]) * uniform(ak, L.A_TX_BW)) / 2.0
    t_f2b = t[:, 4] + (t[:, 5] - t[:, 4]) * uniform(ak, L.A_TX_F2B)
    t_horiz = (t_hbw > 0) & (uniform(ak, L.A_TX_POL) < L.P_HORIZONTAL_DIRECTIONAL)
    osc = -50.0 + 100.0 * uniform(ak, L.A_OSC)
    env_cdf, env_tab, _ = clutter_environments(cfg)
    env = np.searchsorted(env_cdf[:-1], uniform(ak, L.A_TX_CLUTTER), side="right")
    tx_clutter = env_tab[env, 0] if cfg.enable_clutter else np.zeros(N)

    # 3. Each link (N, M).
    lk = slot_keys(key, L.STREAM_LINK, slots)
    p1, p2 = np.radians(tx_lat)[:, None], np.radians(rx_lat)
    dlon = np.radians(rx_lon) - np.radians(tx_lon)[:, None]
    hav = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlon / 2) ** 2
    d_m = 2.0 * L.EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(hav, 0.0, 1.0)))
    d_km = d_m / 1000.0
    bearing = np.degrees(np.arctan2(np.sin(dlon) * np.cos(p2),
                                    np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dlon)))
    back = np.degrees(np.arctan2(-np.sin(dlon) * np.cos(p1),
                                 np.cos(p2) * np.sin(p1) - np.sin(p2) * np.cos(p1) * np.cos(dlon)))
    ue = np.where(d_m > 0, np.sin(np.radians(bearing)), 0.0)
    un = np.where(d_m > 0, np.cos(np.radians(bearing)), 0.0)

    fspl = 20 * np.log10(np.maximum(d_km, L.MIN_PATH_KM)) + 20 * np.log10(cfg.frequency_mhz) + 32.44
    ae_km = L.K_FACTOR * L.EARTH_RADIUS_M / 1000.0
    link_d = np.where(on[:, None] & present_slot, d_km, np.nan)
    if grid is not None and cfg.enable_terrain:
        diff, v = terrain_diffraction(cfg, grid, st, env, tx_lat, tx_lon, tx_ground, rx_lat,
                                      rx_lon, rx_alt, agl, link_d, ae_km)
    elif grid is None and st is not None:
        diff, v = station_distance_diffraction(cfg, st, link_d, ae_km)
    else:
        diff, v = smooth_diffraction(link_d, np.broadcast_to(tx_alt[:, None], (N, M)),
                                     rx_alt + agl, cfg.frequency_mhz, ae_km)
    los = v <= -0.6 * math.sqrt(2.0)
    if not cfg.enable_diffraction:
        diff = np.zeros_like(d_km)
    rx_clutter = r_clutter if cfg.enable_clutter else np.zeros_like(d_km)
    if cfg.enable_shadowing:
        sigma, rho = cfg.location_variability_db, cfg.shadowing_station_correlation
        fixed_fields = 0 if cfg.use_random_receivers else M
        g = shadowing_fields(seed, fixed_fields, cfg.shadowing_correlation_m, tx_lat, tx_lon,
                             reference_latitude(cfg))
        own = normal(lk, L.L_OWN_SHADOW) if cfg.use_random_receivers else g[:, 1:]
        shadow = sigma * (math.sqrt(rho) * g[:, :1] + math.sqrt(1.0 - rho) * own)
    else:
        shadow = np.zeros_like(d_km)
    freq_err = L.RX_FREQ_ERROR_HZ * normal(lk, L.L_FREQ_ERR)
    if cfg.enable_antenna_patterns:
        g_rx = g_rx_own - pattern_db(azimuth_offset(back, r_az), r_hbw, r_f2b)
        g_tx = t_gain[:, None] - pattern_db(azimuth_offset(bearing, t_az[:, None]),
                                            t_hbw[:, None], t_f2b[:, None])
    else:
        g_rx = g_tx = np.zeros_like(d_km)
    if cfg.enable_polarization:
        u_pol = uniform(lk, L.L_POL_LOSS)
        pol = np.where(r_horiz != t_horiz[:, None], 10.0 + 5.0 * u_pol, 0.5 * u_pol)
    else:
        pol = np.zeros_like(d_km)
    if cfg.enable_meteorological:
        absorb = gaseous_db_per_km(cfg.frequency_mhz) * d_km
        tropo = L.TROPO_MAX_DB * np.minimum(d_km / 100.0, 1.0) * (2 * uniform(lk, L.L_TROPO) - 1)
    else:
        absorb = tropo = np.zeros_like(d_km)
    es_on = (cfg.enable_sporadic_e & (d_km >= L.ES_D_MIN_KM) & (d_km <= L.ES_D_MAX_KM)
             & (uniform(lk, L.L_ES) < L.sporadic_e_probability(cfg.frequency_mhz)))
    es = np.where(es_on, L.ES_GAIN_LO + (L.ES_GAIN_HI - L.ES_GAIN_LO) * uniform(lk, L.L_ES_GAIN), 0.0)
    p_base = (p_eff[:, None] + g_tx + g_rx - fspl - diff - tx_clutter[:, None] - rx_clutter
              + shadow - absorb + tropo + es - pol)

    # Fast fading per window (N, M, W): Rician (K 6-10 dB) on line-of-sight links, Rayleigh
    # otherwise; the windows averaged in linear power.
    k_lin = np.where(los, 10.0 ** ((6.0 + 4.0 * uniform(lk, L.L_RICE_K)) / 10.0), 0.0)
    a = np.sqrt(k_lin / (k_lin + 1.0))[..., None]
    b = np.sqrt(0.5 / (k_lin + 1.0))[..., None]
    window_keys = np.broadcast_to(lk[..., None], lk.shape + (W,))
    subs = L.L_FADING0 + np.arange(W)
    if cfg.enable_fading:
        x, y = normal(window_keys, subs), normal(window_keys, subs + PHASE)
        power = np.where(los[..., None], (a + b * x) ** 2 + (b * y) ** 2,
                         exponential(window_keys, subs))
        power = np.maximum(power, L.FADING_FLOOR)
    else:
        power = np.ones(lk.shape + (W,))
    power_db = 10.0 * np.log10(power)
    fading = 10.0 * np.log10(power.mean(axis=2))
    off = ~on[:, None]
    noise = cfg.noise_floor_dbm
    rssi = np.where(off, noise, p_base + fading)
    snr = rssi - noise
    detected = on[:, None] & (snr >= cfg.min_snr_db) & present_slot

    # 4. Geometry of the detecting receivers.
    n_det = detected.sum(axis=1)
    h = np.stack([ue, un, np.ones_like(ue)], axis=2) * detected[..., None]
    q = inverse_diagonal(np.einsum("nmi,nmj->nij", h, h), n_det >= 3)
    gdop, hdop = np.sqrt(q.sum(axis=1)), np.sqrt(q[:, 0] + q[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.stack([L.RSS_C * ue / d_m, L.RSS_C * un / d_m, np.ones_like(ue)], axis=2)
    g = np.where(detected[..., None], g, 0.0)
    j_inv = inverse_diagonal(np.einsum("nmi,nmj->nij", g, g), n_det >= 3)
    s = crb_sigma_db(cfg)
    crb = s * np.sqrt(j_inv[:, 0] + j_inv[:, 1])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_snr = np.where(detected, snr, 0.0).sum(axis=1) / n_det
    mean_snr[n_det == 0] = np.nan

    # 5. Validation, first failure wins.
    max_crb = math.inf if cfg.max_crb_m is None else cfg.max_crb_m
    reason = np.select(
        [~on, n_det < cfg.min_receivers, mean_snr < cfg.min_snr_db, gdop > cfg.max_gdop,
         crb > max_crb],
        [L.R_TX_OFF, L.R_MIN_RECEIVERS, L.R_MIN_SNR, L.R_GDOP, L.R_CRB], L.ACCEPTED)

    # Outputs, with the kernel's conventions for padding and off transmitters.
    out.valid[:] = reason == L.ACCEPTED
    out.reject_reason[:] = reason
    out.n_receivers[:] = n_rx
    out.n_detected[:] = n_det
    out.tx_antenna[:] = t_type
    out.tx_environment[:] = env
    sc = out.scalars
    sc[:, L.F_TX_LAT], sc[:, L.F_TX_LON], sc[:, L.F_TX_ALT] = tx_lat, tx_lon, tx_alt
    sc[:, L.F_P_NOMINAL], sc[:, L.F_P_EFFECTIVE] = cfg.tx_power_dbm, p_eff
    sc[:, L.F_TX_OFFSET], sc[:, L.F_SIGMA] = osc, s
    sc[:, L.F_MEAN_SNR], sc[:, L.F_GDOP], sc[:, L.F_HDOP], sc[:, L.F_CRB] = mean_snr, gdop, hdop, crb
    sc[:, L.F_CONFIDENCE] = np.where(n_det > 0, np.clip(mean_snr / L.CONFIDENCE_FULL_SNR_DB, 0, 1), 0)
    sc[:, L.F_TX_GROUND], sc[:, L.F_TX_CLUTTER] = tx_ground, tx_clutter
    budget = {L.R_FSPL: fspl, L.R_DIFF: diff, L.R_RX_CLUTTER: rx_clutter, L.R_SHADOW: shadow,
              L.R_FADING: fading, L.R_ABSORB: absorb, L.R_TROPO: tropo, L.R_ES: es,
              L.R_POL: pol, L.R_GTX: g_tx, L.R_GRX: g_rx, L.R_LOS: los.astype(float)}
    dev = power_db - power_db[..., :1]
    columns = {
        L.R_LAT: rx_lat, L.R_LON: rx_lon, L.R_ALT: rx_alt, L.R_DIST: d_km, L.R_RSSI: rssi,
        L.R_RSSI_STD: np.where(off, 0.0, dev.std(axis=2)),
        L.R_RSSI_MIN: np.where(off, noise, p_base + power_db.min(axis=2)),
        L.R_RSSI_MAX: np.where(off, noise, p_base + power_db.max(axis=2)),
        L.R_SNR: snr, L.R_NOISE: np.full_like(d_km, noise), L.R_PSD: rssi - 10 * np.log10(cfg.bandwidth_hz),
        L.R_FOFF: np.where(off, np.nan, osc[:, None] + freq_err),
        **{k: np.where(off, np.nan, v) for k, v in budget.items()},
    }
    for k, col in columns.items():
        out.rx[:, :, k] = np.where(present_slot, col, np.nan)
    out.rx_id[:] = np.where(present_slot, slots[None, :], -1)
    out.signal_present[:] = detected
    out.rx_antenna[:] = np.where(present_slot & on[:, None], r_type, -1)
    return out
