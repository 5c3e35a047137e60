"""The friendly, validated API over the kernel: ``run_attempts`` -> ``AttemptBatch``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import layout as L
from .config import ConfigError, GenerationConfig
from .defaults import MAX_SEED, RX_ANTENNAS, TX_ANTENNAS


@dataclass(frozen=True)
class KernelInputs:
    fp: np.ndarray
    ip: np.ndarray
    rx_fixed: np.ndarray
    rx_trig: np.ndarray
    tx_cdf: np.ndarray
    rx_cdf: np.ndarray
    tx_table: np.ndarray
    rx_table: np.ndarray
    max_receivers: int


def antenna_cdf(dist, names) -> np.ndarray:
    return np.cumsum(np.array([dist[k] for k in names], dtype=np.float64))


def pack_config(cfg: GenerationConfig) -> KernelInputs:
    """Plain arrays for the kernel (indices in kernel.attempt)."""
    from . import attempt as K
    from .physics import gaseous_absorption_db_per_km

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
    ip = np.zeros(K.N_IP, dtype=np.int64)
    ip[K.IP_CHUNKS] = cfg.num_chunks
    ip[K.IP_RANDOM] = cfg.use_random_receivers
    ip[K.IP_MIN_COUNT] = cfg.min_receivers_count
    ip[K.IP_MAX_COUNT] = cfg.max_receivers_count
    ip[K.IP_HEX] = cfg.receiver_placement == "hexagonal"
    ip[K.IP_MIN_RX] = cfg.min_receivers
    ip[K.IP_DIFF] = cfg.enable_diffraction
    ip[K.IP_TERRAIN] = cfg.enable_terrain
    ip[K.IP_ANT] = cfg.enable_antenna_patterns
    ip[K.IP_POL] = cfg.enable_polarization
    ip[K.IP_MET] = cfg.enable_meteorological
    ip[K.IP_ES] = cfg.enable_sporadic_e
    rx_fixed = np.array([[r["lat"], r["lon"], r["alt_m"]] for r in cfg.receivers], dtype=np.float64)
    lat, lon = np.radians(rx_fixed[:, 0]), np.radians(rx_fixed[:, 1])
    rx_trig = np.stack([np.sin(lat), np.cos(lat), np.sin(lon), np.cos(lon)], axis=1)
    return KernelInputs(
        fp=fp, ip=ip, rx_fixed=rx_fixed, rx_trig=np.ascontiguousarray(rx_trig),
        tx_cdf=antenna_cdf(cfg.tx_antenna_dist, TX_ANTENNAS),
        rx_cdf=antenna_cdf(cfg.rx_antenna_dist, RX_ANTENNAS),
        tx_table=np.array(L.TX_ANTENNA_TABLE, dtype=np.float64),
        rx_table=np.array(L.RX_ANTENNA_TABLE, dtype=np.float64),
        max_receivers=cfg.max_receivers,
    )


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
    scalars: np.ndarray         # float64
    rx: np.ndarray              # float64
    rx_id: np.ndarray           # int16, -1 in padding
    signal_present: np.ndarray  # bool
    rx_antenna: np.ndarray      # int8, index in defaults.RX_ANTENNAS; -1 in padding

    ARRAYS = ("attempt_index", "valid", "reject_reason", "n_receivers", "n_detected",
              "tx_antenna", "scalars", "rx", "rx_id", "signal_present", "rx_antenna")

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
                 inputs: KernelInputs | None = None, out: AttemptBatch | None = None
                 ) -> AttemptBatch:
    """Evaluate attempts ``start .. start + count - 1`` of a dataset with this seed.

    ``config`` is a GenerationConfig or a dict for ``GenerationConfig.from_dict``. ``threads``
    limits the CPU threads (default: Numba's, i.e. all cores); results do not depend on it.
    A loop may pass ``inputs`` (a ``pack_config`` result) to skip re-packing, and ``out`` (an
    ``AttemptBatch.empty(n, max_receivers)`` with n >= count) to reuse its memory: the result
    is then a view of its first ``count`` rows, overwritten by the next call.
    """
    import numba

    from .attempt import run_attempts_many
    from .jit import parallel_launch

    cfg = config if isinstance(config, GenerationConfig) else GenerationConfig.from_dict(config)
    check_range(seed, start, count)
    k = inputs or pack_config(cfg)
    if out is None:
        out = AttemptBatch.empty(count, k.max_receivers)
    elif len(out) < count or out.rx.shape[1] != k.max_receivers:
        raise ConfigError("out", f"needs room for {count} attempts x {k.max_receivers} "
                                 f"receivers, has {len(out)} x {out.rx.shape[1]}")
    else:
        out = out.head(count)
    out.attempt_index[:] = np.arange(start, start + count, dtype=np.int64)
    previous = numba.get_num_threads()
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or not (
                1 <= threads <= numba.config.NUMBA_NUM_THREADS):
            raise ConfigError("threads", f"must be an integer in [1, {numba.config.NUMBA_NUM_THREADS}]")
        numba.set_num_threads(threads)
    try:
        with parallel_launch():
            run_attempts_many(np.uint64(seed), np.int64(start), k.fp, k.ip, k.rx_fixed, k.rx_trig,
                              k.tx_cdf, k.rx_cdf, k.tx_table, k.rx_table, out.valid,
                              out.reject_reason,
                              out.n_receivers, out.n_detected, out.tx_antenna, out.scalars,
                              out.rx, out.rx_id, out.signal_present, out.rx_antenna)
    finally:
        numba.set_num_threads(previous)
    return out
