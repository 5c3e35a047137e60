"""The one table of parameters: names, types, ranges, defaults and meaning.

Everything that accepts a request (``GenerationConfig``, the dataset API, the CLI, the HTTP
service and the docs generator) reads this table; nothing else in the project spells a default.

Scopes say who owns a field:
  ``data``   shapes the samples; an expansion must not change it (unless overridden);
  ``filter`` decides which attempts are kept; an expansion may change it for one job;
  ``job``    a per-job execution knob, recorded on the job;
  ``request`` identifies the request itself (name, target, dataset to expand).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Default receiver network: seven WebSDR stations in north-west Italy (name, lat N, lon E, alt m).
DEFAULT_RECEIVERS = (
    {"name": "Aquila di Giaveno", "lat": 45.030, "lon": 7.270, "alt_m": 600.0},
    {"name": "Montanaro", "lat": 45.234, "lon": 7.857, "alt_m": 300.0},
    {"name": "Torino", "lat": 45.044, "lon": 7.672, "alt_m": 250.0},
    {"name": "Coazze", "lat": 45.048, "lon": 7.238, "alt_m": 700.0},
    {"name": "Passo del Giovi", "lat": 44.561, "lon": 8.956, "alt_m": 480.0},
    {"name": "Genova", "lat": 44.395, "lon": 8.956, "alt_m": 100.0},
    {"name": "Milano - Baggio", "lat": 45.478, "lon": 9.123, "alt_m": 120.0},
)

#: The version of the physics this code generates (docs/MODEL.md). A change to what a seed
#: produces is a new version; datasets record theirs and expansions check it.
MODEL_VERSION = 2

#: Limits of each receiver's coordinates in a ``receivers`` list.
RECEIVER_LIMITS = {"lat": (-90.0, 90.0), "lon": (-180.0, 180.0), "alt_m": (-500.0, 9000.0)}
#: A station's other numeric fields: (lo, hi, default).
STATION_FIELDS = {"antenna_height_m": (0.5, 300.0, 10.0), "clutter_db": (0.0, 60.0, 0.0)}

TX_ANTENNAS = ("whip", "rubber_duck", "portable_directional")
RX_ANTENNAS = ("omni_vertical", "yagi", "log_periodic", "collinear")
#: A fixed station's antenna: its type's gain range (dBi, the default gain is the middle),
#: and whether it is directional (then it has an azimuth and may be horizontally polarised).
#: Beamwidth and front-to-back of a station's directional antenna are the middle of its
#: type's ranges (kernel.layout.RX_ANTENNA_TABLE).
STATION_ANTENNA_GAIN = {"omni_vertical": (0.0, 3.0), "yagi": (10.0, 15.0),
                        "log_periodic": (8.0, 12.0), "collinear": (6.0, 9.0)}
DIRECTIONAL_ANTENNAS = ("yagi", "log_periodic")
POLARIZATIONS = ("vertical", "horizontal")
#: The transmitter's surroundings, drawn per attempt: ITU-R P.2108 clutter types and shares.
TX_CLUTTER_MIX = (("open", 0.40), ("trees", 0.30), ("suburban", 0.20), ("urban", 0.10))
DATASET_TYPES = ("feature_based", "iq_raw")
IQ_STORAGES = ("regenerate", "postgres")
IQ_FORMATS = ("ci16", "cf32")
#: Bytes of one complex IQ value in each format: int16 I and Q, or float32 I and Q.
IQ_BYTES_PER_VALUE = {"ci16": 4, "cf32": 8}
#: The IQ fields: they apply to iq_raw datasets only (null in a feature_based configuration).
IQ_FIELDS = ("iq_sample_rate_hz", "iq_duration_ms", "iq_storage", "iq_format")
#: What iq_raw rows measure from each receiver's IQ, per measurement window (kernel.iq_features;
#: docs/SIGNALS.md defines each), and how the windows are aggregated: a float4 column per
#: feature and aggregate, one value per receiver (iq_<feature>_<aggregate>).
IQ_FEATURES = ("rssi_dbm", "snr_db", "noise_floor_dbm", "freq_offset_hz", "occupied_bw_hz",
               "psd_dbm_per_hz", "spectral_centroid_hz", "rolloff_hz", "envelope_mean",
               "envelope_std", "envelope_max", "papr_db", "zero_crossing_rate",
               "delay_spread_us", "coherence_bw_hz", "confidence")
IQ_AGGREGATES = ("mean", "std", "min", "max")
IQ_FEATURE_COLUMNS = tuple(f"iq_{feature}_{aggregate}" for feature in IQ_FEATURES
                           for aggregate in IQ_AGGREGATES)
#: The most complex IQ values one sample may hold (receivers x capture samples): 512 MB as
#: complex64, so a job's memory stays bounded whatever the request (docs/SIGNALS.md).
MAX_IQ_VALUES_PER_SAMPLE = 64 * 2**20
#: The fewest IQ samples a measurement window may hold (its spectrum needs some bins).
MIN_IQ_WINDOW_SAMPLES = 64
RECEIVER_PLACEMENTS = ("random", "hexagonal")
#: A sample's split, stored as its code (the index here): kernel/splits.py.
SPLITS = ("train", "validation", "test")

MAX_SAMPLES = 100_000_000
MAX_SEED = 2**63 - 1
MAX_FIXED_RECEIVERS = 64
MAX_RANDOM_RECEIVERS = 15
MAX_CHUNKS = 32

#: max_gdop is 150 for a fixed network and 200 when receivers are drawn per attempt.
MAX_GDOP_FIXED = 150.0
MAX_GDOP_RANDOM = 200.0


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, float, bool, str, choice, uuid, receivers, dist
    default: Any
    scope: str  # data, filter, job, request
    doc: str
    lo: float | None = None  # inclusive unless lo_open
    hi: float | None = None
    lo_open: bool = False
    nullable: bool = False
    choices: tuple = ()
    required: bool = False


def _p(*args, **kw) -> Param:
    return Param(*args, **kw)


PARAMETERS: tuple[Param, ...] = (
    # request
    _p("name", "str", None, "request", "dataset name, unique; required for a new dataset",
       lo=1, hi=100),
    _p("description", "str", None, "request", "free text", nullable=True, lo=0, hi=10_000),
    _p("num_samples", "int", None, "request", "NEW valid samples wanted", lo=1, hi=MAX_SAMPLES,
       required=True),
    _p("expand_dataset_id", "uuid", None, "request", "expand this dataset", nullable=True),
    _p("allow_parameter_override", "bool", False, "request",
       "let an expansion change data-defining fields (recorded on the job)"),
    _p("seed", "int", None, "request", "dataset seed; random and stored when absent",
       lo=0, hi=MAX_SEED, nullable=True),
    # data
    _p("dataset_type", "choice", "feature_based", "data", "kind of sample stored",
       choices=DATASET_TYPES),
    _p("frequency_mhz", "float", 145.0, "data", "carrier frequency (MHz)", lo=1, hi=6000),
    _p("tx_power_dbm", "float", 37.0, "data", "nominal transmitter power (dBm)", lo=-30, hi=60),
    _p("receivers", "receivers", DEFAULT_RECEIVERS, "data",
       "fixed receiver network: list of stations {name, lat, lon, alt_m (ground; from the "
       "terrain when omitted), antenna_height_m (10), antenna {type, azimuth_deg, gain_dbi, "
       "polarization}, clutter_db (0)}", lo=3, hi=MAX_FIXED_RECEIVERS),
    _p("use_random_receivers", "bool", False, "data", "draw a new receiver set every attempt"),
    _p("min_receivers_count", "int", 5, "data", "receivers per attempt when random",
       lo=3, hi=MAX_RANDOM_RECEIVERS),
    _p("max_receivers_count", "int", 10, "data", "receivers per attempt when random",
       lo=3, hi=MAX_RANDOM_RECEIVERS),
    _p("receiver_placement", "choice", "hexagonal", "data", "placement of random receivers",
       choices=RECEIVER_PLACEMENTS),
    _p("area_lat_min", "float", 44.0, "data", "area for random receivers (deg N)", lo=-90, hi=90),
    _p("area_lat_max", "float", 46.0, "data", "area for random receivers (deg N)", lo=-90, hi=90),
    _p("area_lon_min", "float", 7.0, "data", "area for random receivers (deg E)", lo=-180, hi=180),
    _p("area_lon_max", "float", 10.0, "data", "area for random receivers (deg E)", lo=-180, hi=180),
    _p("inside_ratio", "float", 0.7, "data", "share of transmitters inside the receivers' box",
       lo=0, hi=1),
    _p("margin_deg", "float", 0.5, "data", "widening of the box for the other transmitters",
       lo=0, hi=10),
    _p("tx_altitude_m", "float", 300.0, "data",
       "transmitter altitude above sea level without a terrain (m)", lo=-500, hi=9000),
    _p("terrain", "str", None, "data",
       "registered terrain (digital elevation model) for the links' profiles; null: smooth earth",
       lo=1, hi=100, nullable=True),
    _p("tx_height_m", "float", 1.5, "data",
       "transmitter antenna height above ground (m): clutter loss, and altitude with a terrain",
       lo=0.5, hi=100),
    _p("location_variability_db", "float", 5.5, "data",
       "sigma of the spatially correlated shadowing (dB)", lo=0, hi=15),
    _p("shadowing_correlation_m", "float", 200.0, "data",
       "decorrelation distance of the shadowing over transmitter position (m)", lo=10, hi=5000),
    _p("shadowing_station_correlation", "float", 0.5, "data",
       "correlation of the shadowing between stations", lo=0, hi=1),
    _p("noise_floor_dbm", "float", -120.0, "data", "receiver noise floor (dBm)", lo=-200, hi=0),
    _p("bandwidth_hz", "float", 12500.0, "data", "channel bandwidth for the PSD (Hz)",
       lo=1, hi=1e9),
    _p("num_chunks", "int", 5, "data", "measurement windows per sample", lo=1, hi=MAX_CHUNKS),
    _p("enable_diffraction", "bool", True, "data",
       "diffraction loss (ITU-R P.526 delta-Bullington)"),
    _p("enable_terrain", "bool", True, "data",
       "profiles from the terrain's heights (off: smooth earth between the ends)"),
    _p("enable_antenna_patterns", "bool", True, "data", "antenna gains and patterns"),
    _p("enable_polarization", "bool", True, "data", "polarization mismatch loss"),
    _p("enable_meteorological", "bool", True, "data", "gaseous absorption and troposphere"),
    _p("enable_sporadic_e", "bool", True, "data", "sporadic-E enhancement (28-225 MHz)"),
    _p("enable_shadowing", "bool", True, "data", "spatially correlated shadowing"),
    _p("enable_clutter", "bool", True, "data", "transmitter (ITU-R P.2108) and station clutter"),
    _p("enable_fading", "bool", True, "data", "fast fading per measurement window"),
    _p("iq_sample_rate_hz", "float", 50_000.0, "data",
       "iq_raw: IQ sample rate (Hz), at least bandwidth_hz; null for feature_based",
       lo=8_000, hi=2_000_000, nullable=True),
    _p("iq_duration_ms", "float", 200.0, "data",
       "iq_raw: length of every receiver's capture (ms); null for feature_based",
       lo=10, hi=5_000, nullable=True),
    _p("iq_storage", "choice", "regenerate", "data",
       "iq_raw: 'regenerate' (IQ synthesized again, bit for bit, when read) or 'postgres' "
       "(also stored, in the sample's transaction); null for feature_based",
       choices=IQ_STORAGES, nullable=True),
    _p("iq_format", "choice", "ci16", "data",
       "iq_raw: sample format of stored and served IQ, 'ci16' (int16 with a scale per capture) "
       "or 'cf32'; null for feature_based", choices=IQ_FORMATS, nullable=True),
    _p("split_train", "float", 0.8, "data", "share of the map's cells in the train split "
       "(docs/TRAINING.md)", lo=0, hi=1),
    _p("split_validation", "float", 0.1, "data", "share of the map's cells in the validation "
       "split; the test split takes the rest (1 - split_train - split_validation)", lo=0, hi=1),
    _p("split_cell_m", "float", 1000.0, "data", "side of the spatial cells that are split "
       "whole (metres): samples closer than this share a split", lo=10, hi=100_000),
    _p("tx_antenna_dist", "dist", {"whip": 0.90, "rubber_duck": 0.08,
                                   "portable_directional": 0.02}, "data",
       "transmitter antenna mix, sums to 1", choices=TX_ANTENNAS),
    _p("rx_antenna_dist", "dist", {"omni_vertical": 0.70, "yagi": 0.15, "log_periodic": 0.10,
                                   "collinear": 0.05}, "data",
       "receiver antenna mix, sums to 1", choices=RX_ANTENNAS),
    # filters
    _p("min_snr_db", "float", 3.0, "filter", "a receiver detects when its mean SNR >= this",
       lo=-20, hi=60),
    _p("min_receivers", "int", 3, "filter", "detecting receivers needed", lo=2, hi=15),
    _p("max_gdop", "float", None, "filter",
       f"geometry filter; default {MAX_GDOP_FIXED:g} ({MAX_GDOP_RANDOM:g} with random receivers)",
       lo=0, lo_open=True, hi=1e12),
    _p("max_crb_m", "float", None, "filter", "RSS Cramer-Rao bound filter (m); null is off",
       lo=0, lo_open=True, hi=1e12, nullable=True),
    # job
    _p("use_gpu", "bool", None, "job", "run on a CUDA device; null picks automatically",
       nullable=True),
    _p("max_attempts", "int", None, "job", "attempt budget; default 20 x num_samples",
       lo=1, hi=2**62, nullable=True),
    _p("max_consecutive_rejections", "int", 10_000, "job",
       "stall rule: rejected attempts in a row", lo=1, hi=2**62),
    _p("batch_size", "int", None, "job", "attempts per kernel call; automatic when null",
       lo=1, hi=10_000_000, nullable=True),
)

PARAMS_BY_NAME: dict[str, Param] = {p.name: p for p in PARAMETERS}


def names(*scopes: str) -> tuple[str, ...]:
    """Field names of the given scopes, in table order."""
    return tuple(p.name for p in PARAMETERS if p.scope in scopes)


#: Numba options set once for every kernel (sgkit style; njit is nopython). No fastmath: +inf is a real value
#: here (GDOP of a degenerate geometry) and 'ninf' would let LLVM assume it away.
NUMBA_OPTIONS = {"cache": True, "nogil": True, "error_model": "numpy"}
