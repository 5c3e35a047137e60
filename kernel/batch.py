"""The friendly, validated API over the kernel: ``run_attempts`` -> ``AttemptBatch``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import layout as L
from .config import ConfigError, GenerationConfig
from .defaults import MAX_SEED, RX_ANTENNAS, TX_ANTENNAS


@dataclass(frozen=True, eq=False)
class KernelInputs:
    """Plain arrays for the kernel (indices in kernel.attempt), for one dataset seed.

    fp, ip: float and integer parameters (FP_*, IP_*); st: the fixed stations, one row each
    (S_*: position, ground altitude, antenna, clutter, sines and cosines); tx/rx cdf and table:
    antenna mixes and the antenna table; env_cdf, env_tab: the transmitter's clutter
    environments (rows: P.2108 loss, the profile's antenna height above ground, its map index);
    kx, ky, cos_bt, sin_bt: the shadowing fields (phases as features x fields); tiles, geo: the terrain grid as the kernel
    reads it and its [north, west, dlat, dlon, rows, cols, tiles per row]
    (``ElevationGrid.kernel_arrays``; a dummy without terrain); maps_loss, maps_v, mgeo: the
    fixed stations' loss maps over the transmitter box on a terrain; dist_loss, dist_v: their
    smooth-earth loss by distance without one (dummies when not used).
    """
    seed: int
    fp: np.ndarray
    ip: np.ndarray
    st: np.ndarray
    tx_cdf: np.ndarray
    rx_cdf: np.ndarray
    tx_table: np.ndarray
    rx_table: np.ndarray
    env_cdf: np.ndarray
    env_tab: np.ndarray
    kx: np.ndarray
    ky: np.ndarray
    cos_bt: np.ndarray
    sin_bt: np.ndarray
    tiles: np.ndarray
    geo: np.ndarray
    maps_loss: np.ndarray
    maps_v: np.ndarray
    mgeo: np.ndarray
    dist_loss: np.ndarray
    dist_v: np.ndarray
    max_receivers: int

    def arrays(self) -> tuple:
        """The kernel's input arguments after (seed, start), in its order."""
        return (self.fp, self.ip, self.st, self.tx_cdf, self.rx_cdf, self.tx_table,
                self.rx_table, self.env_cdf, self.env_tab, self.kx, self.ky, self.cos_bt,
                self.sin_bt, self.tiles, self.geo, self.maps_loss, self.maps_v, self.mgeo,
                self.dist_loss, self.dist_v)


def antenna_cdf(dist, names) -> np.ndarray:
    return np.cumsum(np.array([dist[k] for k in names], dtype=np.float64))


def fading_residual_db(windows: int) -> float:
    """Standard deviation (dB) of 10 log10 of the mean of ``windows`` independent unit-mean
    Rayleigh powers (a Gamma(W, 1/W) variable): (10 / ln 10) sqrt(trigamma(W)), with
    trigamma(W) = pi^2 / 6 - sum_{k < W} 1 / k^2."""
    trigamma = math.pi ** 2 / 6.0 - sum(1.0 / k ** 2 for k in range(1, windows))
    return 10.0 / math.log(10.0) * math.sqrt(trigamma)


def crb_sigma_db(cfg: GenerationConfig) -> float:
    """The s of the RSS Cramer-Rao bound: the spread of the per-link random terms that are not
    common to the links of an attempt, the station's own shadowing sigma sqrt(1 - rho) and
    the fading left after averaging the windows (Rayleigh's, the larger)."""
    var = 0.0
    if cfg.enable_shadowing:
        var += cfg.location_variability_db ** 2 * (1.0 - cfg.shadowing_station_correlation)
    if cfg.enable_fading:
        var += fading_residual_db(cfg.num_chunks) ** 2
    return math.sqrt(var)


def reference_latitude(cfg: GenerationConfig) -> float:
    """Where the shadowing's planar projection is true: the middle of the receivers' box."""
    if cfg.use_random_receivers:
        return 0.5 * (cfg.area_lat_min + cfg.area_lat_max)
    lats = [r["lat"] for r in cfg.receivers]
    return 0.5 * (min(lats) + max(lats))


def clutter_environments(cfg: GenerationConfig):
    """(env_cdf, env_tab, profile heights): the transmitter's clutter mix, and per environment
    its P.2108 loss at (frequency, tx_height_m), the height the terrain profile takes the
    transmitter at (the larger of tx_height_m and the clutter's representative height) and
    that height's index in ``profile heights`` (with clutter switched off, tx_height_m)."""
    from . import itu
    from .defaults import TX_CLUTTER_MIX
    kinds = {"open": itu.CLUTTER_OPEN, "trees": itu.CLUTTER_TREES,
             "suburban": itu.CLUTTER_SUBURBAN, "urban": itu.CLUTTER_URBAN}
    # P.2108 is given from 30 MHz to 3 GHz: outside, its loss at the nearer end.
    f = min(max(cfg.frequency_mhz, 30.0), 3000.0)
    agl = [max(cfg.tx_height_m, itu.CLUTTER_TYPES[kinds[k]][0]) if cfg.enable_clutter
           else cfg.tx_height_m for k, _ in TX_CLUTTER_MIX]
    heights = sorted(set(agl))
    tab = np.array([[itu.clutter_loss_db(f, cfg.tx_height_m, kinds[k]), h, heights.index(h)]
                    for (k, _), h in zip(TX_CLUTTER_MIX, agl)])
    cdf = np.cumsum([share for _, share in TX_CLUTTER_MIX])
    return cdf, tab, np.array(heights)


def station_rows(cfg: GenerationConfig, grid) -> np.ndarray:
    """The fixed stations as ``st`` rows; a ground altitude left out is the grid's."""
    from . import attempt as K
    st = np.zeros((len(cfg.receivers), K.N_ST))
    for j, r in enumerate(cfg.receivers):
        ant = r["antenna"]
        kind = RX_ANTENNAS.index(ant["type"])
        row = L.RX_ANTENNA_TABLE[kind]
        ground = r["alt_m"]
        if ground is None:
            ground = grid.height_at(r["lat"], r["lon"])
        st[j, K.S_LAT], st[j, K.S_LON], st[j, K.S_GROUND] = r["lat"], r["lon"], ground
        st[j, K.S_AGL], st[j, K.S_TYPE], st[j, K.S_GAIN] = r["antenna_height_m"], kind, ant["gain_dbi"]
        if row[3] > 0.0:  # directional: the middle of its type's beamwidth and front-to-back
            st[j, K.S_AZ] = ant["azimuth_deg"]
            st[j, K.S_HBW] = 0.25 * (row[2] + row[3])
            st[j, K.S_F2B] = 0.5 * (row[4] + row[5])
        st[j, K.S_HORIZ] = 1.0 if ant["polarization"] == "horizontal" else 0.0
        st[j, K.S_CLUTTER] = r["clutter_db"]
        lat, lon = math.radians(r["lat"]), math.radians(r["lon"])
        st[j, K.S_SIN_LAT:K.S_COS_LON + 1] = (math.sin(lat), math.cos(lat), math.sin(lon),
                                             math.cos(lon))
    return st


def transmitter_box(cfg: GenerationConfig) -> tuple[float, float, float, float]:
    """(south, north, west, east) that every transmitter (and receiver) of the dataset lies
    in: the receivers' box (the area for random receivers) widened by margin_deg."""
    if cfg.use_random_receivers:
        s, n, w, e = cfg.area_lat_min, cfg.area_lat_max, cfg.area_lon_min, cfg.area_lon_max
    else:
        lats = [r["lat"] for r in cfg.receivers]
        lons = [r["lon"] for r in cfg.receivers]
        s, n, w, e = min(lats), max(lats), min(lons), max(lons)
    m = cfg.margin_deg
    return s - m, n + m, w - m, e + m


def pack_config(cfg: GenerationConfig, seed: int, terrain=None) -> KernelInputs:
    """Plain arrays for the kernel for this dataset seed. ``terrain`` is the ElevationGrid
    of ``cfg.terrain`` (required when the configuration names one)."""
    from . import attempt as K
    from .physics import gaseous_absorption_db_per_km
    from .shadowing import station_fields, transposed_phases

    check_range(seed, 0, 0)
    if (cfg.terrain is None) != (terrain is None):
        raise ConfigError("terrain", f"the configuration names terrain {cfg.terrain!r}: pass "
                                     "its grid" if terrain is None else
                          "a grid was given but the configuration names no terrain")
    fp = np.zeros(K.N_FP)
    fp[K.FP_FREQ] = cfg.frequency_mhz
    fp[K.FP_TX_POWER] = cfg.tx_power_dbm
    fp[K.FP_MIN_SNR] = cfg.min_snr_db
    fp[K.FP_MAX_GDOP] = cfg.max_gdop
    fp[K.FP_MAX_CRB] = math.inf if cfg.max_crb_m is None else cfg.max_crb_m
    fp[K.FP_INSIDE] = cfg.inside_ratio
    fp[K.FP_MARGIN] = cfg.margin_deg
    fp[K.FP_TX_ALT] = cfg.tx_altitude_m
    fp[K.FP_NOISE] = cfg.noise_floor_dbm
    fp[K.FP_BW_DB] = 10.0 * math.log10(cfg.bandwidth_hz)
    fp[K.FP_LAT0], fp[K.FP_LAT1] = cfg.area_lat_min, cfg.area_lat_max
    fp[K.FP_LON0], fp[K.FP_LON1] = cfg.area_lon_min, cfg.area_lon_max
    fp[K.FP_ABSORB] = gaseous_absorption_db_per_km(cfg.frequency_mhz)
    fp[K.FP_TX_HEIGHT] = cfg.tx_height_m
    fp[K.FP_SIGMA] = cfg.location_variability_db
    fp[K.FP_RHO] = cfg.shadowing_station_correlation
    fp[K.FP_CRB_S] = crb_sigma_db(cfg)
    fp[K.FP_COS_LAT0] = math.cos(math.radians(reference_latitude(cfg)))
    fp[K.FP_AE_KM] = L.K_FACTOR * L.EARTH_RADIUS_M / 1000.0
    fp[K.FP_ES_PROB] = L.sporadic_e_probability(cfg.frequency_mhz)
    ip = np.zeros(K.N_IP, dtype=np.int64)
    ip[K.IP_CHUNKS] = cfg.num_chunks
    ip[K.IP_RANDOM] = cfg.use_random_receivers
    ip[K.IP_MIN_COUNT] = cfg.min_receivers_count
    ip[K.IP_MAX_COUNT] = cfg.max_receivers_count
    ip[K.IP_HEX] = cfg.receiver_placement == "hexagonal"
    ip[K.IP_MIN_RX] = cfg.min_receivers
    for index, flag in ((K.IP_DIFF, cfg.enable_diffraction), (K.IP_TERRAIN, cfg.enable_terrain),
                        (K.IP_ANT, cfg.enable_antenna_patterns),
                        (K.IP_POL, cfg.enable_polarization),
                        (K.IP_MET, cfg.enable_meteorological), (K.IP_ES, cfg.enable_sporadic_e),
                        (K.IP_SHADOW, cfg.enable_shadowing), (K.IP_CLUTTER, cfg.enable_clutter),
                        (K.IP_FADING, cfg.enable_fading)):
        ip[index] = flag
    env_cdf, env_tab, profile_heights = clutter_environments(cfg)
    st = station_rows(cfg, terrain)
    n_fields = 0 if cfg.use_random_receivers else len(cfg.receivers)
    kx, ky, cos_b, sin_b = station_fields(seed, n_fields, cfg.shadowing_correlation_m)
    cos_bt, sin_bt = transposed_phases(cos_b, sin_b)
    tiles, geo = np.zeros(1, np.float32), np.zeros(7)
    maps_loss = maps_v = np.zeros((1, 1, 2, 2))
    mgeo = np.zeros(4)
    dist_loss = dist_v = np.zeros((1, 2))
    if terrain is None and not cfg.use_random_receivers:
        # Over the smooth earth a fixed station's loss depends on the distance alone.
        ip[K.IP_DIST] = 1
        fp[K.FP_DIST_STEP] = DIST_STEP_KM
        dist_loss, dist_v = distance_tables(st, cfg, fp[K.FP_AE_KM])
    if terrain is not None:
        from .terrain import TerrainError
        ip[K.IP_GRID] = 1
        tiles, geo = terrain.kernel_arrays()
        box = transmitter_box(cfg)
        if not terrain.covers(*box):
            raise TerrainError(f"the transmitters' area {_box_text(box)} leaves the terrain "
                               f"{cfg.terrain!r}, whose grid covers {terrain.bounds_text()}")
        if not cfg.use_random_receivers and cfg.enable_terrain:
            ip[K.IP_MAPS] = 1
            maps_loss, maps_v, mgeo = loss_maps(terrain, st, profile_heights, box,
                                                cfg.frequency_mhz, fp[K.FP_AE_KM])
    return KernelInputs(
        seed=int(seed), fp=fp, ip=ip, st=st,
        tx_cdf=antenna_cdf(cfg.tx_antenna_dist, TX_ANTENNAS),
        rx_cdf=antenna_cdf(cfg.rx_antenna_dist, RX_ANTENNAS),
        tx_table=np.array(L.TX_ANTENNA_TABLE, dtype=np.float64),
        rx_table=np.array(L.RX_ANTENNA_TABLE, dtype=np.float64),
        env_cdf=env_cdf, env_tab=env_tab, kx=kx, ky=ky, cos_bt=cos_bt, sin_bt=sin_bt,
        tiles=tiles, geo=geo, maps_loss=maps_loss, maps_v=maps_v, mgeo=mgeo,
        dist_loss=dist_loss, dist_v=dist_v, max_receivers=cfg.max_receivers,
    )


def _box_text(box) -> str:
    s, n, w, e = box
    return f"(latitude {s:.5f} to {n:.5f}, longitude {w:.5f} to {e:.5f})"


#: The smooth-earth distance tables' step (km): linear interpolation between nodes this close
#: stays within 0.01 dB of the exact loss (tests/test_model2.py).
DIST_STEP_KM = 0.025


def box_span_km(box) -> float:
    """The longest great-circle distance between two corners of ``box``: no link of the
    dataset is longer (its stations and transmitters all lie in the box)."""
    from .terrain import great_circle_km
    s, n, w, e = box
    corners = [(s, w), (s, e), (n, w), (n, e)]
    return max(great_circle_km(*a, *b) for a in corners for b in corners)


def distance_tables(st, cfg: GenerationConfig, ae_km: float):
    """(loss, v): each fixed station's smooth-earth diffraction loss and Fresnel parameter at
    distances 0, DIST_STEP_KM, ... beyond the longest link of the transmitter box, from a
    transmitter at tx_altitude_m (``attempt.build_distance_tables``; cached per process)."""
    from .attempt import build_distance_tables
    from .jit import kernel_launch
    nodes = int(math.ceil(1.01 * box_span_km(transmitter_box(cfg)) / DIST_STEP_KM)) + 2

    def build():
        loss, v = np.zeros((st.shape[0], nodes)), np.zeros((st.shape[0], nodes))
        with kernel_launch():
            build_distance_tables(st, cfg.tx_altitude_m, cfg.frequency_mhz, ae_km,
                                  DIST_STEP_KM, loss, v)
        return loss, v

    key = ("distance", st.tobytes(), cfg.tx_altitude_m, cfg.frequency_mhz, ae_km, nodes)
    return _remember(key, build)


#: What the kernel precomputes per dataset (loss maps, distance tables), kept for the
#: process: the most recent few, oldest dropped first.
_TABLES: dict = {}
_TABLES_KEPT = 4


def _remember(key, build):
    """The value cached under ``key``, built (and kept) when missing."""
    if key not in _TABLES:
        value = build()
        if len(_TABLES) >= _TABLES_KEPT:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = value
    return _TABLES[key]


#: A loss map has at most this many cells along each side; no finer than the terrain's grid.
MAP_CELLS = 128


def map_lattice(terrain, box) -> np.ndarray:
    """[north, west, dlat, dlon, rows, cols] of the loss maps' lattice over ``box``."""
    s, n, w, e = box
    dlat = max((n - s) / MAP_CELLS, terrain.dlat)
    dlon = max((e - w) / MAP_CELLS, terrain.dlon)
    rows = int(math.ceil((n - s) / dlat - 1e-9)) + 1
    cols = int(math.ceil((e - w) / dlon - 1e-9)) + 1
    return np.array([n, w, (n - s) / (rows - 1), (e - w) / (cols - 1), rows, cols])


def loss_maps(terrain, st, profile_heights, box, f_mhz, ae_km):
    """Each fixed station's diffraction loss (and decisive Fresnel parameter) from a
    transmitter at every node of a lattice over the transmitter box, one map per profile
    height; the kernel interpolates them bilinearly. Cached for the process (a few maps)."""
    from .attempt import build_loss_maps
    from .jit import kernel_launch
    from .terrain import TerrainError
    lattice = map_lattice(terrain, box)

    def build():
        rows, cols = int(lattice[4]), int(lattice[5])
        shape = (st.shape[0], len(profile_heights), rows, cols)
        maps_loss, maps_v = np.zeros(shape), np.zeros(shape)
        ok = np.zeros(shape, np.bool_)
        with kernel_launch():
            build_loss_maps(st, profile_heights, *terrain.kernel_arrays(), lattice[:4], f_mhz,
                            ae_km, maps_loss, maps_v, ok)
        if not ok.all():
            raise TerrainError(f"a link from the transmitters' area to a station leaves the "
                               f"terrain's grid {terrain.bounds_text()}")
        return maps_loss, maps_v, lattice[:4].copy()

    key = ("maps", terrain.sha256(), st.tobytes(), profile_heights.tobytes(), lattice.tobytes(),
           f_mhz)
    return _remember(key, build)


@dataclass
class AttemptBatch:
    """Arrays, one entry per attempt (row i is attempt ``attempt_index[i]``).

    ``scalars`` (attempts x len(SCALAR_FIELDS)) and ``rx`` (attempts x max receivers x
    len(RX_FIELDS)) hold the float columns; attribute access by name gives views, e.g.
    ``batch.gdop`` or ``batch.rssi_dbm`` (attempts x max receivers, NaN in padding slots).
    """

    attempt_index: np.ndarray   # int64
    valid: np.ndarray           # bool
    reject_reason: np.ndarray   # int8: 0 accepted, else 1 + index in REJECT_REASONS
    n_receivers: np.ndarray     # int16
    n_detected: np.ndarray      # int16
    tx_antenna: np.ndarray      # int8, index in defaults.TX_ANTENNAS
    tx_environment: np.ndarray  # int8, index in defaults.TX_CLUTTER_MIX
    scalars: np.ndarray         # float64
    rx: np.ndarray              # float64
    rx_id: np.ndarray           # int16, -1 in padding
    signal_present: np.ndarray  # bool
    rx_antenna: np.ndarray      # int8, index in defaults.RX_ANTENNAS; -1 in padding

    ARRAYS = ("attempt_index", "valid", "reject_reason", "n_receivers", "n_detected",
              "tx_antenna", "tx_environment", "scalars", "rx", "rx_id", "signal_present", "rx_antenna")

    def __getattr__(self, name):
        if name in _SCALAR_INDEX:
            return self.scalars[:, _SCALAR_INDEX[name]]
        if name in _RX_INDEX:
            return self.rx[:, :, _RX_INDEX[name]]
        raise AttributeError(name)

    def __len__(self) -> int:
        return self.valid.shape[0]

    @classmethod
    def empty(cls, count: int, max_receivers: int) -> "AttemptBatch":
        return cls(
            attempt_index=np.zeros(count, np.int64), valid=np.zeros(count, np.bool_),
            reject_reason=np.zeros(count, np.int8), n_receivers=np.zeros(count, np.int16),
            n_detected=np.zeros(count, np.int16), tx_antenna=np.zeros(count, np.int8),
            tx_environment=np.zeros(count, np.int8),
            scalars=np.zeros((count, len(L.SCALAR_FIELDS))),
            rx=np.zeros((count, max_receivers, len(L.RX_FIELDS))),
            rx_id=np.zeros((count, max_receivers), np.int16),
            signal_present=np.zeros((count, max_receivers), np.bool_),
            rx_antenna=np.zeros((count, max_receivers), np.int8),
        )

    def head(self, count: int) -> "AttemptBatch":
        """The first ``count`` rows as views (no copy)."""
        return AttemptBatch(**{k: getattr(self, k)[:count] for k in self.ARRAYS})

    def take(self, rows) -> "AttemptBatch":
        """A new batch of the given rows (an index array or a boolean mask)."""
        return AttemptBatch(**{k: getattr(self, k)[rows] for k in self.ARRAYS})

    def accepted(self) -> "AttemptBatch":
        """The valid attempts, in attempt order."""
        return self.take(np.flatnonzero(self.valid))

    def rejection_counts(self) -> dict[str, int]:
        counts = np.bincount(self.reject_reason, minlength=len(L.REJECT_REASONS) + 1)
        return {name: int(counts[k + 1]) for k, name in enumerate(L.REJECT_REASONS)}

    def tobytes(self) -> bytes:
        """Every array's bytes, concatenated: equal bytes mean identical batches."""
        return b"".join(np.ascontiguousarray(getattr(self, k)).tobytes() for k in self.ARRAYS)


_SCALAR_INDEX = {name: k for k, name in enumerate(L.SCALAR_FIELDS)}
_RX_INDEX = {name: k for k, name in enumerate(L.RX_FIELDS)}


def check_range(seed, start, count) -> None:
    for name, value, hi in (("seed", seed, MAX_SEED), ("start", start, 2**62),
                            ("count", count, 2**31)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ConfigError(name, f"must be an integer, got {type(value).__name__}")
        if not 0 <= value <= hi:
            raise ConfigError(name, f"{value} is out of range [0, {hi}]")


def run_attempts(config, seed: int, start: int, count: int, threads: int | None = None,
                 inputs: KernelInputs | None = None, out: AttemptBatch | None = None,
                 terrain=None) -> AttemptBatch:
    """Evaluate attempts ``start .. start + count - 1`` of a dataset with this seed.

    ``config`` is a GenerationConfig or a dict for ``GenerationConfig.from_dict``; ``terrain``
    the ElevationGrid its ``terrain`` names (kernel.terrain). ``threads`` limits the CPU
    threads (default: Numba's, i.e. all cores); results do not depend on it. A loop may pass
    ``inputs`` (a ``pack_config`` result for this seed) to skip re-packing, and ``out`` (an
    ``AttemptBatch.empty(n, max_receivers)`` with n >= count) to reuse its memory: the result
    is then a view of its first ``count`` rows, overwritten by the next call. A link that
    leaves the terrain's grid raises TerrainError naming the grid's bounds.
    """
    from .attempt import run_attempts_many
    from .jit import kernel_launch

    cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
    check_range(seed, start, count)
    if inputs is not None and inputs.seed != seed:
        raise ConfigError("inputs", f"were packed for seed {inputs.seed}, not {seed}")
    k = inputs or pack_config(cfg, seed, terrain)
    if out is None:
        out = AttemptBatch.empty(count, k.max_receivers)
    elif len(out) < count or out.rx.shape[1] != k.max_receivers:
        raise ConfigError("out", f"needs room for {count} attempts x {k.max_receivers} "
                                 f"receivers, has {len(out)} x {out.rx.shape[1]}")
    else:
        out = out.head(count)
    out.attempt_index[:] = np.arange(start, start + count, dtype=np.int64)
    off_grid = np.zeros(count, np.bool_)
    with kernel_launch(threads):
        run_attempts_many(np.uint64(seed), np.int64(start), *k.arrays(), out.valid,
                          out.reject_reason, out.n_receivers, out.n_detected,
                          out.tx_antenna, out.tx_environment, out.scalars, out.rx,
                          out.rx_id, out.signal_present, out.rx_antenna, off_grid)
    if off_grid.any():
        from .terrain import TerrainError
        first = int(start + np.flatnonzero(off_grid)[0])
        raise TerrainError(f"attempt {first}: a link leaves the terrain's grid "
                           f"(latitude {k.geo[0] - (k.geo[4] - 1) * k.geo[2]:.5f} to "
                           f"{k.geo[0]:.5f}, longitude {k.geo[1]:.5f} to "
                           f"{k.geo[1] + (k.geo[5] - 1) * k.geo[3]:.5f})")
    return out
