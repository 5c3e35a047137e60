"""GenerationConfig: the validated configuration of one dataset (data + filter fields).

Validation is strict by design: an unknown field, a wrong type or a value out of range raises
``ConfigError`` naming the field; nothing is coerced (0 stays 0, "3" is not 3, True is not 1).
Integers are accepted for float fields because JSON does not tell 145 from 145.0.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, fields
from types import MappingProxyType
from typing import Any, Mapping

from . import defaults as D
from .defaults import PARAMS_BY_NAME, Param


class ConfigError(ValueError):
    """A request field is unknown, of the wrong type or out of range. ``field`` names it."""

    def __init__(self, field: str | None, message: str):
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message


def _range_text(p: Param) -> str:
    lo = "(" if p.lo_open else "["
    return f"{lo}{p.lo:g}, {p.hi:g}]"


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None when it is not a real finite number (bool, text,
    NaN, inf, or an integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _check_number(name: str, value: Any, p: Param, integer: bool) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if not integer else int):
        want = "an integer" if integer else "a number"
        raise ConfigError(name, f"must be {want}, got {type(value).__name__} {value!r}")
    if not integer and _finite(value) is None:
        raise ConfigError(name, f"must be a finite number in {_range_text(p)}, got {value!r}")
    if p.lo is not None:
        too_low = value <= p.lo if p.lo_open else value < p.lo
        if too_low or value > p.hi:
            raise ConfigError(name, f"{value!r} is out of range {_range_text(p)}")
    return value if integer else float(value)


def _check_dist(name: str, value: Any, p: Param) -> dict:
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"must be an object mapping {list(p.choices)} to shares")
    unknown = sorted(set(value) - set(p.choices), key=str)
    if unknown:
        raise ConfigError(name, f"unknown antenna type(s) {unknown}; allowed {list(p.choices)}")
    out = {}
    for k in p.choices:
        share = _finite(value.get(k, 0.0))
        if share is None or not 0.0 <= share <= 1.0:
            raise ConfigError(name, f"share of {k!r} must be a number in [0, 1], "
                                    f"got {value.get(k)!r}")
        out[k] = share
    total = sum(out.values())
    if abs(total - 1.0) > 1e-9:
        raise ConfigError(name, f"shares must sum to 1, they sum to {total:.6g}")
    return out


STATION_KEYS = ("name", *D.RECEIVER_LIMITS, *D.STATION_FIELDS, "antenna")
ANTENNA_KEYS = ("type", "azimuth_deg", "gain_dbi", "polarization")


def _station_number(where: str, value: Any, lo: float, hi: float) -> float:
    v = _finite(value)
    if v is None or not lo <= v <= hi:
        raise ConfigError(where, f"must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return v


def _check_antenna(where: str, value: Any) -> MappingProxyType:
    """A station's antenna: {type, azimuth_deg, gain_dbi, polarization}, all fixed."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise ConfigError(where, "must be an object {type, azimuth_deg, gain_dbi, polarization}")
    extra = sorted(set(value) - set(ANTENNA_KEYS), key=str)
    if extra:
        raise ConfigError(f"{where}.{extra[0]}", f"unknown field; allowed {list(ANTENNA_KEYS)}")
    kind = value.get("type", "omni_vertical")
    if not isinstance(kind, str) or kind not in D.STATION_ANTENNA_GAIN:
        raise ConfigError(f"{where}.type", f"must be one of {list(D.RX_ANTENNAS)}, got {kind!r}")
    directional = kind in D.DIRECTIONAL_ANTENNAS
    lo, hi = D.STATION_ANTENNA_GAIN[kind]
    gain = value.get("gain_dbi")
    gain = 0.5 * (lo + hi) if gain is None else _station_number(f"{where}.gain_dbi", gain, lo, hi)
    azimuth = value.get("azimuth_deg")
    if directional:
        if azimuth is None:
            raise ConfigError(f"{where}.azimuth_deg", f"is required for a {kind} antenna "
                                                      "(degrees clockwise from north)")
        azimuth = _station_number(f"{where}.azimuth_deg", azimuth, 0.0, 360.0)
    elif azimuth is not None:
        raise ConfigError(f"{where}.azimuth_deg", f"a {kind} antenna is omnidirectional: it has "
                                                  "no azimuth")
    polarization = value.get("polarization", "vertical")
    if not isinstance(polarization, str) or polarization not in D.POLARIZATIONS:
        raise ConfigError(f"{where}.polarization",
                          f"must be one of {list(D.POLARIZATIONS)}, got {polarization!r}")
    if polarization == "horizontal" and not directional:
        raise ConfigError(f"{where}.polarization", f"a {kind} antenna is vertical")
    return MappingProxyType({"type": kind, "azimuth_deg": azimuth, "gain_dbi": gain,
                             "polarization": polarization})


def _check_receivers(name: str, value: Any, p: Param) -> tuple:
    """The stations of a fixed network, each with every field explicit (defaults filled).
    ``alt_m`` may be null (taken from the terrain: checked with the terrain field)."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(name, "must be a list of stations {name, lat, lon, alt_m, ...}")
    if not p.lo <= len(value) <= p.hi:
        raise ConfigError(name, f"needs {p.lo:g} to {p.hi:g} receivers, got {len(value)}")
    out, seen = [], set()
    for i, rx in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(rx, Mapping):
            raise ConfigError(where, "must be an object {name, lat, lon, alt_m, ...}")
        extra = sorted(set(rx) - set(STATION_KEYS), key=str)
        if extra:
            raise ConfigError(f"{where}.{extra[0]}", f"unknown field; allowed {list(STATION_KEYS)}")
        rx_name = rx.get("name")
        if not isinstance(rx_name, str) or not 1 <= len(rx_name) <= 100:
            raise ConfigError(f"{where}.name", "must be text of 1 to 100 characters")
        if rx_name in seen:
            raise ConfigError(f"{where}.name", f"duplicate receiver name {rx_name!r}")
        seen.add(rx_name)
        item = {"name": rx_name}
        for key, (lo, hi) in D.RECEIVER_LIMITS.items():
            if key == "alt_m" and rx.get(key) is None:
                item[key] = None
                continue
            if key not in rx:
                raise ConfigError(f"{where}.{key}", "is required")
            item[key] = _station_number(f"{where}.{key}", rx[key], lo, hi)
        for key, (lo, hi, default) in D.STATION_FIELDS.items():
            item[key] = (default if rx.get(key) is None
                         else _station_number(f"{where}.{key}", rx[key], lo, hi))
        item["antenna"] = _check_antenna(f"{where}.antenna", rx.get("antenna"))
        out.append(MappingProxyType(item))
    return tuple(out)


_UUID_RE = re.compile(r"(?:urn:uuid:)?(\{)?[0-9a-fA-F]{8}(-?)[0-9a-fA-F]{4}\2[0-9a-fA-F]{4}"
                      r"\2[0-9a-fA-F]{4}\2[0-9a-fA-F]{12}(?(1)\})")


def check_value(name: str, value: Any) -> Any:
    """Validate one field against the parameter table; return it in canonical form."""
    p = PARAMS_BY_NAME.get(name)
    if p is None:
        raise ConfigError(name, "unknown field")
    if value is None:
        if p.nullable:
            return None
        raise ConfigError(name, "must not be null")
    if p.kind == "int":
        return _check_number(name, value, p, integer=True)
    if p.kind == "float":
        return _check_number(name, value, p, integer=False)
    if p.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value
    if p.kind == "str":
        if not isinstance(value, str):
            raise ConfigError(name, f"must be text, got {type(value).__name__}")
        if not p.lo <= len(value) <= p.hi:
            raise ConfigError(name, f"must be {p.lo:g} to {p.hi:g} characters long")
        return value
    if p.kind == "choice":
        if value not in p.choices or not isinstance(value, str):
            raise ConfigError(name, f"must be one of {list(p.choices)}, got {value!r}")
        return value
    if p.kind == "uuid":
        # The standard spellings only (8-4-4-4-12 hex, 32 hex, braces, urn:uuid:): uuid.UUID
        # would also take signs, spaces and underscores and quietly make another id of them.
        if not isinstance(value, str) or not _UUID_RE.fullmatch(value):
            raise ConfigError(name, f"must be a UUID (8-4-4-4-12 hex digits), got {value!r}")
        return str(uuid.UUID(value))
    if p.kind == "dist":
        return MappingProxyType(_check_dist(name, value, p))
    if p.kind == "receivers":
        return _check_receivers(name, value, p)
    raise AssertionError(p.kind)  # pragma: no cover - the table only uses the kinds above


def plain(value: Any) -> Any:
    """Validated values (mapping proxies, tuples) as plain JSON types (dicts, lists)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


CONFIG_FIELDS = D.names("data", "filter")


@dataclass(frozen=True, init=False)
class GenerationConfig:
    """Every field that shapes the samples or filters them, with the parameter table's defaults.

    ``GenerationConfig()`` is the defaults; ``GenerationConfig(frequency_mhz=433.0)`` or
    ``GenerationConfig({"frequency_mhz": 433.0})`` validates what it is given (ConfigError
    naming the field) and takes the table's default for the rest. ``from_dict`` is the same.
    """

    dataset_type: str
    frequency_mhz: float
    tx_power_dbm: float
    receivers: tuple
    use_random_receivers: bool
    min_receivers_count: int
    max_receivers_count: int
    receiver_placement: str
    area_lat_min: float
    area_lat_max: float
    area_lon_min: float
    area_lon_max: float
    inside_ratio: float
    margin_deg: float
    tx_altitude_m: float
    terrain: str | None
    tx_height_m: float
    location_variability_db: float
    shadowing_correlation_m: float
    shadowing_station_correlation: float
    noise_floor_dbm: float
    bandwidth_hz: float
    num_chunks: int
    enable_diffraction: bool
    enable_terrain: bool
    enable_antenna_patterns: bool
    enable_polarization: bool
    enable_meteorological: bool
    enable_sporadic_e: bool
    enable_shadowing: bool
    enable_clutter: bool
    enable_fading: bool
    iq_sample_rate_hz: float | None
    iq_duration_ms: float | None
    iq_storage: str | None
    iq_format: str | None
    split_train: float
    split_validation: float
    split_cell_m: float
    tx_antenna_dist: Mapping
    rx_antenna_dist: Mapping
    min_snr_db: float
    min_receivers: int
    max_gdop: float
    max_crb_m: float | None

    def __init__(self, d: Mapping[str, Any] | None = None, **overrides: Any):
        for name, value in _validated(d, overrides).items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None = None, **overrides: Any) -> "GenerationConfig":
        """Validate ``d`` (plus keyword overrides); missing fields take the table's defaults."""
        return cls(d, **overrides)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict; ``from_dict(to_dict())`` gives an equal config."""
        return {f.name: plain(getattr(self, f.name)) for f in fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def replace(self, **changes: Any) -> "GenerationConfig":
        """A validated copy with some fields changed. Unchanged fields keep their resolved
        values: max_gdop stays what it is when only use_random_receivers changes."""
        return GenerationConfig.from_dict({**self.to_dict(), **changes})

    @property
    def is_iq(self) -> bool:
        return self.dataset_type == "iq_raw"

    @property
    def iq_capture(self) -> int:
        """IQ samples in each receiver's capture (iq_raw; 0 otherwise)."""
        if not self.is_iq:
            return 0
        return iq_capture_samples(self.iq_sample_rate_hz, self.iq_duration_ms)

    @property
    def max_receivers(self) -> int:
        """Width of the per-receiver arrays: the most receivers one attempt can have."""
        return self.max_receivers_count if self.use_random_receivers else len(self.receivers)



def iq_capture_samples(sample_rate_hz: float, duration_ms: float) -> int:
    """IQ samples in a capture of ``duration_ms`` at ``sample_rate_hz`` (rounded)."""
    return int(round(sample_rate_hz * duration_ms / 1000.0))


def _validated(d, overrides: dict) -> dict:
    """The validated value of every configuration field: given ones checked, the rest the
    table's defaults."""
    if d is not None and not isinstance(d, Mapping):
        raise ConfigError(None, "configuration must be an object")
    given = {**(d or {}), **overrides}
    unknown = sorted(set(given) - set(CONFIG_FIELDS), key=str)
    if unknown:
        raise ConfigError(str(unknown[0]), "unknown field")
    values = {}
    for name in CONFIG_FIELDS:
        p = PARAMS_BY_NAME[name]
        if name in given:
            values[name] = check_value(name, given[name])
        elif name == "max_gdop" or name in D.IQ_FIELDS:
            values[name] = None  # resolved below: they depend on other fields
        else:
            values[name] = check_value(name, p.default) if p.default is not None else None
    if values["max_gdop"] is None:
        values["max_gdop"] = (D.MAX_GDOP_RANDOM if values["use_random_receivers"]
                              else D.MAX_GDOP_FIXED)
    for name in D.IQ_FIELDS:
        if values["dataset_type"] != "iq_raw":
            if values[name] is not None:
                raise ConfigError(name, f"applies to iq_raw datasets only (dataset_type is "
                                        f"{values['dataset_type']!r}); leave it out or null")
        elif values[name] is None:  # absent or null: the table's default
            values[name] = check_value(name, PARAMS_BY_NAME[name].default)
    _check_relations(values)
    return values


def _check_relations(v: dict) -> None:
    if v["min_receivers_count"] > v["max_receivers_count"]:
        raise ConfigError("min_receivers_count",
                          f"{v['min_receivers_count']} is greater than max_receivers_count "
                          f"{v['max_receivers_count']}")
    if v["area_lat_min"] >= v["area_lat_max"]:
        raise ConfigError("area_lat_min", "must be less than area_lat_max")
    if v["area_lon_min"] >= v["area_lon_max"]:
        raise ConfigError("area_lon_min", "must be less than area_lon_max")
    if v["terrain"] is None and not v["use_random_receivers"]:
        for i, rx in enumerate(v["receivers"]):
            if rx["alt_m"] is None:
                raise ConfigError(f"receivers[{i}].alt_m", "is required without a terrain "
                                  "(with one, an omitted ground altitude is read from it)")
    if v["split_train"] + v["split_validation"] > 1.0:
        raise ConfigError("split_validation", f"split_train {v['split_train']:g} + "
                          f"split_validation {v['split_validation']:g} is more than 1")
    n_rx = v["max_receivers_count"] if v["use_random_receivers"] else len(v["receivers"])
    if v["dataset_type"] == "iq_raw":
        _check_iq(v, n_rx)
    if v["min_receivers"] > n_rx:
        raise ConfigError("min_receivers", f"{v['min_receivers']} is more than the "
                          f"{n_rx} receivers an attempt can have")


def _check_iq(v: dict, n_rx: int) -> None:
    """An iq_raw capture must hold the channel, enough samples per measurement window, and
    fit the per-sample memory bound."""
    fs, bandwidth = v["iq_sample_rate_hz"], v["bandwidth_hz"]
    if fs < bandwidth:
        raise ConfigError("iq_sample_rate_hz", f"{fs:g} Hz is less than bandwidth_hz "
                          f"{bandwidth:g}: the channel must fit in the IQ capture")
    capture = iq_capture_samples(fs, v["iq_duration_ms"])
    per_window = capture // v["num_chunks"]
    if per_window < D.MIN_IQ_WINDOW_SAMPLES:
        raise ConfigError("iq_duration_ms", f"{v['iq_duration_ms']:g} ms at {fs:g} Hz gives "
                          f"{per_window} IQ samples in each of the {v['num_chunks']} measurement "
                          f"windows; at least {D.MIN_IQ_WINDOW_SAMPLES} are needed")
    if n_rx * capture > D.MAX_IQ_VALUES_PER_SAMPLE:
        raise ConfigError("iq_duration_ms", f"{n_rx} receivers x {capture:,} IQ samples is "
                          f"{n_rx * capture:,} values per sample, more than the "
                          f"{D.MAX_IQ_VALUES_PER_SAMPLE:,} one sample may hold; shorten the "
                          "capture or lower iq_sample_rate_hz")


def check_split(name) -> str | None:
    """A split filter (``split=`` of the samples endpoint, export and loader): None (every
    sample) or one of defaults.SPLITS; ConfigError naming ``split`` otherwise."""
    if name is None or name in D.SPLITS:
        return name
    raise ConfigError("split", f"must be one of {list(D.SPLITS)}, got {name!r}")
