"""GenerationConfig and check_value against the parameter table (kernel/defaults.py).

The contract: an unknown field, a wrong type or an out-of-range value raises ``ConfigError`` whose
``.field`` names the field; nothing is silently coerced (0 stays 0, "3" is not 3, True is not 1,
1.5 is not an int, NaN/inf are refused); integers are accepted for float fields.

Cases are generated from ``kernel.defaults.PARAMETERS`` wherever possible so that every field of
the table is covered. No Numba kernel is imported here.
"""

from __future__ import annotations

import dataclasses
import json
import math
import uuid

import pytest

from heimdall_synth.kernel import DEFAULT_RECEIVERS, PARAMETERS, ConfigError, GenerationConfig
from heimdall_synth.kernel import defaults as D
from heimdall_synth.kernel.config import CONFIG_FIELDS, check_value
from heimdall_synth.kernel.defaults import IQ_FIELDS

INF = math.inf
NAN = math.nan
P = D.PARAMS_BY_NAME
CONFIG_PARAMS = [p for p in PARAMETERS if p.scope in ("data", "filter")]
OTHER_PARAMS = [p for p in PARAMETERS if p.scope not in ("data", "filter")]
NUMERIC_PARAMS = [p for p in PARAMETERS if p.kind in ("int", "float")]


# --------------------------------------------------------------------------------------------
# helpers


def refused(field, fn, *args, **kwargs) -> ConfigError:
    """Call ``fn`` and require a ConfigError naming ``field``; return the error."""
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    err = info.value
    assert err.field == field, f"expected field {field!r}, got {err.field!r}: {err}"
    assert isinstance(err, ValueError)
    if field is not None:
        assert str(field) in str(err)
    return err


def rx(name, lat=45.0, lon=7.5, alt_m=100.0):
    return {"name": name, "lat": lat, "lon": lon, "alt_m": alt_m}


def receivers(n):
    return [rx(f"rx{i}", 44.0 + i * 0.01, 7.0 + i * 0.01, 100.0 + i) for i in range(n)]


STATION_DEFAULTS = {"antenna_height_m": 10.0, "clutter_db": 0.0,
                    "antenna": {"type": "omni_vertical", "azimuth_deg": None, "gain_dbi": 1.5,
                                "polarization": "vertical"}}


def rx_dicts(cfg):
    """The stations as plain dicts, without the fields left at their defaults."""
    out = []
    for r in cfg.receivers:
        d = {k: (dict(v) if k == "antenna" else v) for k, v in r.items()}
        out.append({k: v for k, v in d.items() if STATION_DEFAULTS.get(k, object()) != v})
    return out


def range_text_parts(p):
    """What an out-of-range message must show: both limits (formatted like the table)."""
    return [f"{p.lo:g}", f"{p.hi:g}"]


def context(name, value):
    """Other fields needed so that ``name=value`` passes the cross-field relations.

    Returns None when no context can make the value valid (e.g. area_lat_min = 90 needs an
    area_lat_max above 90); those cases are covered by check_value alone.
    """
    if name == "min_receivers_count":
        return {"max_receivers_count": 15} if value > 10 else {}
    if name == "max_receivers_count":
        return {"min_receivers_count": 3} if value < 5 else {}
    if name == "min_receivers":
        return {"use_random_receivers": True, "max_receivers_count": 15} if value > 7 else {}
    if name == "iq_sample_rate_hz":  # the channel must fit in the capture
        return {"dataset_type": "iq_raw", "bandwidth_hz": min(12_500.0, value)}
    if name in IQ_FIELDS:
        return {"dataset_type": "iq_raw"}
    if name == "split_train":  # the shares add up to at most 1
        return {"split_validation": min(0.1, 1.0 - value)}
    if name == "split_validation":
        return {"split_train": min(0.8, 1.0 - value)}
    for axis, lo, hi, dmin, dmax in (("lat", -90, 90, 44, 46), ("lon", -180, 180, 7, 10)):
        if name == f"area_{axis}_min":
            if value >= hi:
                return None
            return {f"area_{axis}_max": hi} if value >= dmax else {}
        if name == f"area_{axis}_max":
            if value <= lo:
                return None
            return {f"area_{axis}_min": lo} if value <= dmin else {}
    return {}


def _ids(cases):
    return [f"{c[0]}={c[1]!r}" for c in cases]


# --------------------------------------------------------------------------------------------
# the table itself


def test_config_fields_are_the_dataclass_fields():
    assert tuple(f.name for f in dataclasses.fields(GenerationConfig)) == CONFIG_FIELDS
    assert set(CONFIG_FIELDS) == {p.name for p in CONFIG_PARAMS}


@pytest.mark.parametrize("p", NUMERIC_PARAMS, ids=lambda p: p.name)
def test_every_numeric_parameter_has_a_range(p):
    assert p.lo is not None and p.hi is not None and p.lo < p.hi


# --------------------------------------------------------------------------------------------
# defaults

SPEC_DEFAULTS = {
    "dataset_type": "feature_based",
    "frequency_mhz": 145.0,
    "tx_power_dbm": 37.0,
    "use_random_receivers": False,
    "min_receivers_count": 5,
    "max_receivers_count": 10,
    "receiver_placement": "hexagonal",
    "area_lat_min": 44.0,
    "area_lat_max": 46.0,
    "area_lon_min": 7.0,
    "area_lon_max": 10.0,
    "inside_ratio": 0.7,
    "margin_deg": 0.5,
    "tx_altitude_m": 300.0,
    "noise_floor_dbm": -120.0,
    "bandwidth_hz": 12500.0,
    "num_chunks": 5,
    "enable_diffraction": True,
    "enable_terrain": True,
    "enable_antenna_patterns": True,
    "enable_polarization": True,
    "enable_meteorological": True,
    "enable_sporadic_e": True,
    "tx_antenna_dist": {"whip": 0.90, "rubber_duck": 0.08, "portable_directional": 0.02},
    "rx_antenna_dist": {"omni_vertical": 0.70, "yagi": 0.15, "log_periodic": 0.10,
                        "collinear": 0.05},
    "min_snr_db": 3.0,
    "min_receivers": 3,
    "max_gdop": 150.0,
    "max_crb_m": None,
}

SPEC_RECEIVERS = [
    ("Aquila di Giaveno", 45.030, 7.270, 600),
    ("Montanaro", 45.234, 7.857, 300),
    ("Torino", 45.044, 7.672, 250),
    ("Coazze", 45.048, 7.238, 700),
    ("Passo del Giovi", 44.561, 8.956, 480),
    ("Genova", 44.395, 8.956, 100),
    ("Milano - Baggio", 45.478, 9.123, 120),
]


@pytest.mark.parametrize("name", [n for n in CONFIG_FIELDS if n not in ("max_gdop",)])
def test_default_equals_table(name):
    cfg = GenerationConfig.from_dict({"dataset_type": "iq_raw"} if name in IQ_FIELDS else {})
    value = getattr(cfg, name)
    default = P[name].default
    if name == "receivers":
        assert rx_dicts(cfg) == [dict(r) for r in default]
    elif P[name].kind == "dist":
        assert dict(value) == default
    else:
        assert value == default
        assert type(value) is type(default) or default is None


@pytest.mark.parametrize("name", sorted(SPEC_DEFAULTS))
def test_default_equals_spec(name):
    cfg = GenerationConfig.from_dict()
    value = getattr(cfg, name)
    expected = SPEC_DEFAULTS[name]
    if isinstance(expected, dict):
        assert dict(value) == pytest.approx(expected)
    else:
        assert value == expected
    if isinstance(expected, bool) or expected is None:
        assert value is expected
    elif isinstance(expected, int):
        assert type(value) is int
    elif isinstance(expected, float):
        assert type(value) is float


def test_default_receivers_are_the_seven_spec_stations():
    cfg = GenerationConfig.from_dict()
    got = [(r["name"], r["lat"], r["lon"], r["alt_m"]) for r in cfg.receivers]
    assert got == [(n, la, lo, float(a)) for n, la, lo, a in SPEC_RECEIVERS]
    assert [(r["name"], r["lat"], r["lon"], r["alt_m"]) for r in DEFAULT_RECEIVERS] == got
    assert all(type(r[k]) is float for r in cfg.receivers for k in ("lat", "lon", "alt_m"))
    assert cfg.max_receivers == 7


def test_defaults_from_none_empty_and_no_argument_are_equal():
    assert GenerationConfig.from_dict() == GenerationConfig.from_dict({})
    assert GenerationConfig.from_dict(None) == GenerationConfig.from_dict({})


def test_default_mappings_are_copies_not_the_table():
    cfg = GenerationConfig.from_dict()
    assert cfg.tx_antenna_dist is not P["tx_antenna_dist"].default
    with pytest.raises(TypeError):
        cfg.tx_antenna_dist["whip"] = 0.0  # read-only view
    with pytest.raises(TypeError):
        cfg.receivers[0]["lat"] = 0.0
    assert P["tx_antenna_dist"].default["whip"] == 0.90


def test_config_is_frozen():
    cfg = GenerationConfig.from_dict()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.frequency_mhz = 433.0  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# max_gdop resolution


@pytest.mark.parametrize("given, expected", [
    ({}, 150.0),
    ({"use_random_receivers": False}, 150.0),
    ({"use_random_receivers": True}, 200.0),
    ({"use_random_receivers": True, "max_gdop": 150.0}, 150.0),
    ({"use_random_receivers": True, "max_gdop": 150}, 150.0),
    ({"use_random_receivers": True, "max_gdop": 7.5}, 7.5),
    ({"use_random_receivers": False, "max_gdop": 200.0}, 200.0),
    ({"use_random_receivers": False, "max_gdop": 3}, 3.0),
    ({"max_gdop": 1e12}, 1e12),
    ({"use_random_receivers": True, "max_gdop": 1e-9}, 1e-9),
])
def test_max_gdop_resolution(given, expected):
    cfg = GenerationConfig.from_dict(given)
    assert cfg.max_gdop == expected
    assert type(cfg.max_gdop) is float


def test_max_gdop_constants_match_spec():
    assert D.MAX_GDOP_FIXED == 150.0
    assert D.MAX_GDOP_RANDOM == 200.0


@pytest.mark.parametrize("random", [False, True])
def test_max_gdop_null_is_not_use_default(random):
    refused("max_gdop", GenerationConfig.from_dict,
            {"use_random_receivers": random, "max_gdop": None})


# --------------------------------------------------------------------------------------------
# round trips

ROUND_TRIP_CONFIGS = {
    "defaults": {},
    "random": {"use_random_receivers": True, "min_receivers_count": 4, "max_receivers_count": 12,
               "receiver_placement": "random", "area_lat_min": -10, "area_lat_max": 10.5,
               "area_lon_min": -180, "area_lon_max": 180, "min_receivers": 4},
    "custom_network": {"receivers": receivers(5), "min_receivers": 5, "max_gdop": 42,
                       "max_crb_m": 1234.5},
    "zeros": {"inside_ratio": 0, "margin_deg": 0, "tx_power_dbm": 0, "min_snr_db": 0,
              "tx_altitude_m": 0, "noise_floor_dbm": 0, "area_lat_min": 0},
    "flags_off": {n: False for n in CONFIG_FIELDS if n.startswith("enable_")},
    "partial_dists": {"tx_antenna_dist": {"whip": 1}, "rx_antenna_dist": {"yagi": 0.5,
                                                                         "collinear": 0.5}},
    "boundaries": {"frequency_mhz": 6000, "tx_power_dbm": -30, "num_chunks": 32,
                   "bandwidth_hz": 1e9, "max_crb_m": 5e-324, "receivers": receivers(64),
                   "min_receivers": 15},
}


@pytest.mark.parametrize("given", ROUND_TRIP_CONFIGS.values(), ids=ROUND_TRIP_CONFIGS.keys())
def test_to_dict_round_trips_through_json(given):
    cfg = GenerationConfig.from_dict(given)
    d = cfg.to_dict()
    assert tuple(d) == CONFIG_FIELDS
    text = json.dumps(d)  # plain JSON types only
    back = json.loads(text)
    again = GenerationConfig.from_dict(back)
    assert again == cfg
    assert again.to_dict() == d
    assert GenerationConfig.from_dict(json.loads(cfg.to_json())) == cfg
    # types survive: int fields stay int, float fields stay float
    for p in CONFIG_PARAMS:
        v = getattr(again, p.name)
        if p.kind == "int":
            assert type(v) is int, p.name
        elif p.kind == "float" and v is not None:
            assert type(v) is float, p.name


def test_to_dict_returns_fresh_plain_containers():
    cfg = GenerationConfig.from_dict()
    d = cfg.to_dict()
    assert type(d["receivers"]) is list and all(type(r) is dict for r in d["receivers"])
    assert type(d["tx_antenna_dist"]) is dict and type(d["rx_antenna_dist"]) is dict
    d["receivers"][0]["lat"] = 0.0
    d["tx_antenna_dist"]["whip"] = 0.0
    d["frequency_mhz"] = 1.0
    assert cfg == GenerationConfig.from_dict()


def test_input_is_not_aliased():
    nets = receivers(4)
    dist = {"whip": 0.5, "rubber_duck": 0.5}
    cfg = GenerationConfig.from_dict({"receivers": nets, "tx_antenna_dist": dist})
    before = cfg.to_dict()
    nets[0]["lat"] = -89.0
    nets.append(rx("late"))
    dist["whip"] = 0.9
    assert cfg.to_dict() == before


def test_keyword_overrides_win_over_the_mapping():
    cfg = GenerationConfig.from_dict({"frequency_mhz": 433.0, "num_chunks": 2},
                                     frequency_mhz=868)
    assert cfg.frequency_mhz == 868.0 and cfg.num_chunks == 2


def test_from_dict_accepts_the_default_receivers_tuple_and_any_mapping():
    from types import MappingProxyType
    cfg = GenerationConfig.from_dict(MappingProxyType({"receivers": DEFAULT_RECEIVERS}))
    assert cfg == GenerationConfig.from_dict()


@pytest.mark.parametrize("not_a_mapping", [[], [("frequency_mhz", 1.0)], "frequency_mhz", 5])
def test_from_dict_refuses_a_non_mapping(not_a_mapping):
    refused(None, GenerationConfig.from_dict, not_a_mapping)


def test_replace_changes_and_validates():
    cfg = GenerationConfig.from_dict()
    new = cfg.replace(frequency_mhz=433, min_receivers=4)
    assert new.frequency_mhz == 433.0 and type(new.frequency_mhz) is float
    assert new.min_receivers == 4
    assert cfg.frequency_mhz == 145.0  # original untouched
    assert new.replace() == new
    assert new.replace(frequency_mhz=145.0, min_receivers=3) == cfg


@pytest.mark.parametrize("changes, field", [
    ({"frequency_mhz": 0}, "frequency_mhz"),
    ({"frequency_mhz": "433"}, "frequency_mhz"),
    ({"min_receivers": True}, "min_receivers"),
    ({"inside_ratio": NAN}, "inside_ratio"),
    ({"bogus": 1}, "bogus"),
    ({"seed": 1}, "seed"),
    ({"min_receivers": 8}, "min_receivers"),  # only 7 default receivers
    ({"area_lat_min": 46.0}, "area_lat_min"),
    ({"receivers": receivers(2)}, "receivers"),
    ({"tx_antenna_dist": {"whip": 0.5}}, "tx_antenna_dist"),
])
def test_replace_refuses_bad_changes(changes, field):
    refused(field, GenerationConfig.from_dict().replace, **changes)


def test_max_receivers_property():
    assert GenerationConfig.from_dict({"receivers": receivers(9)}).max_receivers == 9
    cfg = GenerationConfig.from_dict({"use_random_receivers": True, "max_receivers_count": 13})
    assert cfg.max_receivers == 13


# --------------------------------------------------------------------------------------------
# unknown fields


@pytest.mark.parametrize("name", ["bogus", "frequency", "Frequency_MHz", "frequency_mhz ",
                                  "max_gdop_m", "receiver", ""])
def test_unknown_top_level_field(name):
    refused(name, GenerationConfig.from_dict, {name: 1.0})
    refused(name, GenerationConfig.from_dict, {"frequency_mhz": 145.0, name: 1.0})


def test_unknown_field_as_keyword_override():
    refused("bogus", GenerationConfig.from_dict, {}, bogus=3)


def test_several_unknown_fields_name_one_of_them():
    err = refused("alpha", GenerationConfig.from_dict, {"zeta": 1, "alpha": 2})
    assert "unknown" in str(err)


def test_unknown_non_string_key_is_a_config_error():
    # a mapping with mixed key types must still give a ConfigError, not a TypeError from sorting
    with pytest.raises(ConfigError) as info:
        GenerationConfig.from_dict({1: 0, "bogus": 0})
    assert info.value.field in (1, "1", "bogus")


@pytest.mark.parametrize("p", OTHER_PARAMS, ids=lambda p: p.name)
def test_request_and_job_fields_are_not_config_fields(p):
    value = {"str": "x", "int": 1, "bool": True, "uuid": str(uuid.uuid4())}.get(p.kind, 1)
    assert check_value(p.name, value) is not None or p.nullable  # valid for check_value ...
    refused(p.name, GenerationConfig.from_dict, {p.name: value})  # ... but not a config field


@pytest.mark.parametrize("name", ["bogus", "Seed", "receivers[0]", ""])
def test_check_value_unknown_field(name):
    refused(name, check_value, name, 1)


@pytest.mark.parametrize("index", [0, 3])
def test_unknown_field_inside_a_receiver(index):
    nets = receivers(5)
    nets[index]["height"] = 10.0
    err = refused(f"receivers[{index}].height", GenerationConfig.from_dict, {"receivers": nets})
    for key in ("name", "lat", "lon", "alt_m"):
        assert key in str(err)


# --------------------------------------------------------------------------------------------
# wrong types, for every field of the table


def _wrong_values(p):
    vals = []
    if p.kind == "int":
        vals = [1.5, float(p.lo), float(p.lo + 1), str(int(p.lo)), str(int(p.lo) + 1), True,
                False, [], {}, [int(p.lo)]]
    elif p.kind == "float":
        vals = [str(p.lo), str(float(p.lo) + 0.5), "1", True, False, NAN, INF, -INF, [], {},
                [p.lo], b"1"]
    elif p.kind == "bool":
        vals = [0, 1, 0.0, 1.0, "true", "false", "True", "", [], {}]
    elif p.kind == "choice":
        vals = ["unknown", "", p.choices[0].upper(), p.choices[0] + " ", 0, 1, True,
                [p.choices[0]], {p.choices[0]: 1}]
    elif p.kind == "str":
        vals = [5, 1.0, True, b"abc", ["abc"], {"a": 1}]
    elif p.kind == "uuid":
        vals = [5, True, 1.5, b"0123456789abcdef0123456789abcdef", ["x"], {}]
    elif p.kind == "dist":
        vals = [[], [[p.choices[0], 1.0]], [p.choices[0]], p.choices[0], 1.0, 1, True, set()]
    elif p.kind == "receivers":
        vals = [{}, rx("a"), {"0": rx("a"), "1": rx("b"), "2": rx("c")}, "abc", 5, True, 1.5]
    if not p.nullable:
        vals.append(None)
    return [(p.name, v) for v in vals]


WRONG_TYPES = [c for p in PARAMETERS for c in _wrong_values(p)]
WRONG_TYPES_CONFIG = [c for c in WRONG_TYPES if c[0] in CONFIG_FIELDS]


def test_every_parameter_kind_has_wrong_type_cases():
    assert {c[0] for c in WRONG_TYPES} == {p.name for p in PARAMETERS}


@pytest.mark.parametrize("name, value", WRONG_TYPES, ids=_ids(WRONG_TYPES))
def test_check_value_refuses_wrong_type(name, value):
    refused(name, check_value, name, value)


@pytest.mark.parametrize("name, value", WRONG_TYPES_CONFIG, ids=_ids(WRONG_TYPES_CONFIG))
def test_from_dict_refuses_wrong_type(name, value):
    refused(name, GenerationConfig.from_dict, {name: value})


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.kind == "choice"], ids=lambda p: p.name)
def test_choice_message_names_the_choices(p):
    err = refused(p.name, check_value, p.name, "nope")
    for c in p.choices:
        assert c in str(err)
    for c in p.choices:
        assert check_value(p.name, c) == c
        assert getattr(GenerationConfig.from_dict({**context(p.name, c), p.name: c}),
                       p.name) == c


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.kind == "bool"], ids=lambda p: p.name)
@pytest.mark.parametrize("value", [True, False])
def test_bool_fields_keep_their_value(p, value):
    assert check_value(p.name, value) is value
    if p.name in CONFIG_FIELDS:
        assert getattr(GenerationConfig.from_dict({p.name: value}), p.name) is value


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.nullable], ids=lambda p: p.name)
def test_nullable_fields_accept_null(p):
    assert check_value(p.name, None) is None
    if p.name in CONFIG_FIELDS:
        assert getattr(GenerationConfig.from_dict({p.name: None}), p.name) is None


@pytest.mark.parametrize("p", [p for p in PARAMETERS if not p.nullable], ids=lambda p: p.name)
def test_non_nullable_fields_refuse_null(p):
    refused(p.name, check_value, p.name, None)


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.kind == "float"], ids=lambda p: p.name)
def test_float_fields_refuse_a_huge_integer(p):
    # json.loads gives an int for a long run of digits; it is out of range, not a crash
    huge = json.loads("1" + "0" * 400)
    refused(p.name, check_value, p.name, huge)
    refused(p.name, check_value, p.name, -huge)


@pytest.mark.parametrize("p", [p for p in PARAMETERS if p.kind == "int"], ids=lambda p: p.name)
def test_int_fields_refuse_a_huge_integer(p):
    huge = 10 ** 400
    refused(p.name, check_value, p.name, huge)
    refused(p.name, check_value, p.name, -huge)


# --------------------------------------------------------------------------------------------
# numeric ranges, for every int/float parameter


def _inside(p):
    if p.kind == "int":
        return [int(p.lo) + (1 if p.lo_open else 0), int(p.hi)]
    vals = [math.nextafter(float(p.lo), INF) if p.lo_open else float(p.lo), float(p.hi)]
    if not p.lo_open and float(p.lo).is_integer():
        vals.append(int(p.lo))  # ints are accepted for float fields
    if float(p.hi).is_integer():
        vals.append(int(p.hi))
    return vals


def _outside(p):
    if p.kind == "int":
        lo = int(p.lo)
        return [lo if p.lo_open else lo - 1, lo - 1000, int(p.hi) + 1, int(p.hi) * 2 + 7]
    lo, hi = float(p.lo), float(p.hi)
    vals = [math.nextafter(hi, INF), hi + 1, hi * 2 + 1 if hi > 0 else hi + 1000]
    if p.lo_open:
        vals += [lo, math.nextafter(lo, -INF), lo - 1]
        if lo.is_integer():
            vals.append(int(lo))  # 0 is not > 0
    else:
        vals += [math.nextafter(lo, -INF), lo - 1]
    if lo.is_integer():
        vals.append(int(lo) - 1)
    if hi.is_integer():
        vals.append(int(hi) + 1)
    return vals


IN_RANGE = [(p.name, v) for p in NUMERIC_PARAMS for v in _inside(p)]
OUT_OF_RANGE = [(p.name, v) for p in NUMERIC_PARAMS for v in _outside(p)]
IN_RANGE_CONFIG = [(n, v, context(n, v)) for n, v in IN_RANGE
                   if n in CONFIG_FIELDS and context(n, v) is not None]
OUT_OF_RANGE_CONFIG = [c for c in OUT_OF_RANGE if c[0] in CONFIG_FIELDS]


def test_range_cases_cover_every_numeric_parameter():
    assert {n for n, _ in IN_RANGE} == {p.name for p in NUMERIC_PARAMS}
    assert {n for n, _ in OUT_OF_RANGE} == {p.name for p in NUMERIC_PARAMS}
    config_numeric = {p.name for p in NUMERIC_PARAMS if p.name in CONFIG_FIELDS}
    assert {c[0] for c in IN_RANGE_CONFIG} == config_numeric
    assert {c[0] for c in OUT_OF_RANGE_CONFIG} == config_numeric


@pytest.mark.parametrize("name, value", IN_RANGE, ids=_ids(IN_RANGE))
def test_check_value_accepts_boundaries(name, value):
    got = check_value(name, value)
    assert got == value
    assert type(got) is (int if P[name].kind == "int" else float)


@pytest.mark.parametrize("name, value", OUT_OF_RANGE, ids=_ids(OUT_OF_RANGE))
def test_check_value_refuses_just_outside(name, value):
    err = refused(name, check_value, name, value)
    for part in range_text_parts(P[name]):
        assert part in str(err), f"range limit {part} not named in {err}"
    if P[name].lo_open:
        assert f"({P[name].lo:g}" in str(err)


@pytest.mark.parametrize("name, value, ctx", IN_RANGE_CONFIG,
                         ids=[f"{n}={v!r}" for n, v, _ in IN_RANGE_CONFIG])
def test_from_dict_accepts_boundaries(name, value, ctx):
    cfg = GenerationConfig.from_dict({**ctx, name: value})
    got = getattr(cfg, name)
    assert got == value
    assert type(got) is (int if P[name].kind == "int" else float)
    assert GenerationConfig.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("name, value", OUT_OF_RANGE_CONFIG, ids=_ids(OUT_OF_RANGE_CONFIG))
def test_from_dict_refuses_just_outside(name, value):
    err = refused(name, GenerationConfig.from_dict, {name: value})
    for part in range_text_parts(P[name]):
        assert part in str(err)


# --------------------------------------------------------------------------------------------
# 0 is a value


ZERO_CASES = [(p.name, z) for p in CONFIG_PARAMS if p.kind == "float"
              and p.lo <= 0 <= p.hi and not (p.lo_open and p.lo == 0) for z in (0, 0.0)]


def test_zero_cases_include_the_spec_examples():
    names = {n for n, _ in ZERO_CASES}
    assert {"inside_ratio", "margin_deg", "tx_power_dbm", "min_snr_db",
            "noise_floor_dbm"} <= names


@pytest.mark.parametrize("name, zero", ZERO_CASES, ids=_ids(ZERO_CASES))
def test_zero_stays_zero(name, zero):
    cfg = GenerationConfig.from_dict({**context(name, zero), name: zero})
    assert getattr(cfg, name) == 0.0
    assert type(getattr(cfg, name)) is float
    assert getattr(cfg, name) != P[name].default
    assert cfg.to_dict()[name] == 0.0
    assert getattr(GenerationConfig.from_dict(json.loads(cfg.to_json())), name) == 0.0
    assert check_value(name, zero) == 0.0


def test_zero_seed_and_empty_description_are_values():
    assert check_value("seed", 0) == 0 and type(check_value("seed", 0)) is int
    assert check_value("description", "") == ""


# --------------------------------------------------------------------------------------------
# antenna mixes

DIST_PARAMS = [p for p in PARAMETERS if p.kind == "dist"]


def _bad_dists(p):
    a, b, c = p.choices[:3]
    return [
        ({a: 0.5, b: 0.4, c: 0.0}, "sum"),
        ({a: 0.5, b: 0.4}, "sum"),
        ({a: 0.99}, "sum"),
        ({a: 0.7, b: 0.31}, "sum"),
        ({}, "sum"),
        ({a: 0.0}, "sum"),
        ({a: 1.1, b: -0.1}, "share"),
        ({a: 1.5, b: -0.5}, "share"),
        ({a: 2.0}, "share"),
        ({a: -1e-12, b: 1.0}, "share"),
        ({a: NAN, b: 1.0}, "share"),
        ({a: INF}, "share"),
        ({a: "1"}, "share"),
        ({a: True}, "share"),
        ({a: 0.5, b: True, c: False}, "share"),
        ({a: None, b: 1.0}, "share"),
        ({a: [1.0]}, "share"),
        ({a: 0.5, "unknown_antenna": 0.5}, "unknown"),
        ({a.upper(): 1.0}, "unknown"),
        ({a: 1.0, "": 0.0}, "unknown"),
    ]


DIST_BAD = [(p.name, d, why) for p in DIST_PARAMS for d, why in _bad_dists(p)]


@pytest.mark.parametrize("name, dist, why", DIST_BAD,
                         ids=[f"{n}-{why}-{i}" for i, (n, _, why) in enumerate(DIST_BAD)])
def test_bad_antenna_mix_is_refused(name, dist, why):
    err = refused(name, GenerationConfig.from_dict, {name: dist})
    refused(name, check_value, name, dist)
    if why == "unknown":
        for choice in P[name].choices:
            assert choice in str(err)
    if why == "sum":
        assert "sum" in str(err)


def _good_dists(p):
    ch = p.choices
    return [
        ({ch[0]: 1}, {ch[0]: 1.0}),
        ({ch[0]: 1.0}, {ch[0]: 1.0}),
        ({ch[-1]: 0.25, ch[0]: 0.75}, {ch[0]: 0.75, ch[-1]: 0.25}),
        ({ch[0]: 0.7, ch[1]: 0.1, ch[2]: 0.2}, {ch[0]: 0.7, ch[1]: 0.1, ch[2]: 0.2}),
        ({c: 1 / len(ch) for c in ch}, {c: 1 / len(ch) for c in ch}),
        ({c: (1.0 if i == 1 else 0) for i, c in enumerate(ch)}, {ch[1]: 1.0}),
    ]


DIST_GOOD = [(p.name, d, e) for p in DIST_PARAMS for d, e in _good_dists(p)]


@pytest.mark.parametrize("name, dist, expected", DIST_GOOD,
                         ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(DIST_GOOD)])
def test_good_antenna_mix_missing_names_count_as_zero(name, dist, expected):
    cfg = GenerationConfig.from_dict({name: dist})
    got = dict(getattr(cfg, name))
    full = {c: expected.get(c, 0.0) for c in P[name].choices}
    assert set(got) == set(P[name].choices)
    assert got == pytest.approx(full)
    assert all(type(v) is float for v in got.values())
    assert GenerationConfig.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("p", DIST_PARAMS, ids=lambda p: p.name)
def test_antenna_mix_with_mixed_key_types_is_a_config_error(p):
    with pytest.raises(ConfigError) as info:
        check_value(p.name, {p.choices[0]: 1.0, 1: 0.0, "x": 0.0})
    assert info.value.field == p.name


@pytest.mark.parametrize("p", DIST_PARAMS, ids=lambda p: p.name)
def test_antenna_mix_huge_integer_share(p):
    refused(p.name, check_value, p.name, {p.choices[0]: 10 ** 400})


# --------------------------------------------------------------------------------------------
# receivers


@pytest.mark.parametrize("n", [3, 4, 7, 63, 64])
def test_receiver_count_in_range(n):
    cfg = GenerationConfig.from_dict({"receivers": receivers(n)})
    assert len(cfg.receivers) == n
    assert rx_dicts(cfg) == [{k: float(v) if k != "name" else v for k, v in r.items()}
                             for r in receivers(n)]


@pytest.mark.parametrize("n", [0, 1, 2, 65, 100])
def test_receiver_count_out_of_range(n):
    err = refused("receivers", GenerationConfig.from_dict, {"receivers": receivers(n)})
    assert "3" in str(err) and "64" in str(err)


def test_receivers_as_tuple_and_int_coordinates():
    nets = tuple(rx(f"r{i}", 45, 7 + i, 0) for i in range(3))
    cfg = GenerationConfig.from_dict({"receivers": nets})
    assert [r["lon"] for r in cfg.receivers] == [7.0, 8.0, 9.0]
    assert all(type(r[k]) is float for r in cfg.receivers for k in ("lat", "lon", "alt_m"))
    assert cfg.receivers[0]["alt_m"] == 0.0  # 0 is an altitude, not "use default"


@pytest.mark.parametrize("key", ["name", "lat", "lon", "alt_m"])
@pytest.mark.parametrize("index", [0, 1, 4])
def test_receiver_missing_key(key, index):
    nets = receivers(5)
    del nets[index][key]
    refused(f"receivers[{index}].{key}", GenerationConfig.from_dict, {"receivers": nets})


RX_BAD = [
    ("lat", 90.0001), ("lat", -90.0001), ("lat", math.nextafter(90.0, INF)), ("lat", 91),
    ("lat", -91), ("lon", 180.0001), ("lon", -180.0001), ("lon", 181), ("lon", -181),
    ("alt_m", -500.0001), ("alt_m", 9000.0001), ("alt_m", -501), ("alt_m", 9001),
    ("lat", True), ("lon", False), ("alt_m", True),
    ("lat", "45.0"), ("lon", None), ("alt_m", "100"), ("lat", [45.0]),
    ("lat", NAN), ("lon", INF), ("alt_m", -INF),
    ("lat", 10 ** 400),
    ("name", ""), ("name", "x" * 101), ("name", 5), ("name", None), ("name", True),
    ("name", ["a"]),
]


@pytest.mark.parametrize("key, value", RX_BAD, ids=[f"{k}={v!r}"[:40] for k, v in RX_BAD])
def test_receiver_bad_entry(key, value):
    nets = receivers(4)
    nets[1][key] = value
    refused(f"receivers[1].{key}", GenerationConfig.from_dict, {"receivers": nets})


RX_GOOD = [("lat", 90), ("lat", -90.0), ("lon", 180.0), ("lon", -180), ("alt_m", -500),
           ("alt_m", 9000.0), ("lat", 0), ("lon", 0.0), ("name", "x"), ("name", "x" * 100)]


@pytest.mark.parametrize("key, value", RX_GOOD, ids=[f"{k}={v!r}"[:40] for k, v in RX_GOOD])
def test_receiver_boundary_entry_accepted(key, value):
    nets = receivers(4)
    nets[1][key] = value
    cfg = GenerationConfig.from_dict({"receivers": nets})
    assert cfg.receivers[1][key] == value


@pytest.mark.parametrize("entry", [[45.0, 7.0, 100.0], "Torino", 5, None, ("a", 1, 2, 3)])
def test_receiver_entry_not_an_object(entry):
    nets = receivers(4)
    nets[2] = entry
    refused("receivers[2]", GenerationConfig.from_dict, {"receivers": nets})


@pytest.mark.parametrize("first, second", [(0, 1), (0, 3), (2, 4)])
def test_duplicate_receiver_names(first, second):
    nets = receivers(5)
    nets[second]["name"] = nets[first]["name"]
    err = refused(f"receivers[{second}].name", GenerationConfig.from_dict, {"receivers": nets})
    assert nets[first]["name"] in str(err)


def test_receiver_names_are_case_sensitive_and_distinct():
    nets = receivers(3)
    nets[0]["name"], nets[1]["name"] = "Torino", "torino"
    assert [r["name"] for r in GenerationConfig.from_dict({"receivers": nets}).receivers][:2] == \
        ["Torino", "torino"]


def test_first_bad_receiver_is_named():
    nets = receivers(5)
    nets[1]["lat"] = 100.0
    nets[3]["lon"] = 200.0
    refused("receivers[1].lat", GenerationConfig.from_dict, {"receivers": nets})


# --------------------------------------------------------------------------------------------
# relations between fields


@pytest.mark.parametrize("random", [False, True])
@pytest.mark.parametrize("lo, hi", [(8, 6), (15, 3), (11, 10), (6, 5)])
def test_min_receivers_count_above_max(random, lo, hi):
    refused("min_receivers_count", GenerationConfig.from_dict,
            {"use_random_receivers": random, "min_receivers_count": lo,
             "max_receivers_count": hi})


@pytest.mark.parametrize("n", [3, 5, 15])
def test_min_receivers_count_equal_to_max(n):
    cfg = GenerationConfig.from_dict({"use_random_receivers": True, "min_receivers_count": n,
                                      "max_receivers_count": n})
    assert cfg.min_receivers_count == cfg.max_receivers_count == n


@pytest.mark.parametrize("axis", ["lat", "lon"])
@pytest.mark.parametrize("lo, hi", [(45.0, 45.0), (46.0, 44.0), (0, 0.0), (-10, -20),
                                    (5, math.nextafter(5.0, -INF))])
def test_area_min_not_below_max(axis, lo, hi):
    refused(f"area_{axis}_min", GenerationConfig.from_dict,
            {f"area_{axis}_min": lo, f"area_{axis}_max": hi})


@pytest.mark.parametrize("axis, lim", [("lat", 90), ("lon", 180)])
def test_area_may_span_the_whole_range(axis, lim):
    cfg = GenerationConfig.from_dict({f"area_{axis}_min": -lim, f"area_{axis}_max": lim,
                                      "use_random_receivers": True})
    assert getattr(cfg, f"area_{axis}_min") == -lim
    assert getattr(cfg, f"area_{axis}_max") == lim
    close = GenerationConfig.from_dict({f"area_{axis}_min": 5.0,
                                        f"area_{axis}_max": math.nextafter(5.0, INF)})
    assert getattr(close, f"area_{axis}_min") == 5.0


@pytest.mark.parametrize("given", [
    {"receivers": receivers(3), "min_receivers": 4},
    {"receivers": receivers(5), "min_receivers": 6},
    {"min_receivers": 8},  # the seven default stations
    {"min_receivers": 15},
    {"use_random_receivers": True, "max_receivers_count": 6, "min_receivers": 7},
    {"use_random_receivers": True, "min_receivers_count": 3, "max_receivers_count": 3,
     "min_receivers": 4},
    {"use_random_receivers": True, "min_receivers": 11},  # max_receivers_count 10 by default
    {"use_random_receivers": True, "receivers": receivers(20), "max_receivers_count": 12,
     "min_receivers": 13},
])
def test_min_receivers_above_what_an_attempt_can_have(given):
    err = refused("min_receivers", GenerationConfig.from_dict, given)
    assert str(given["min_receivers"]) in str(err)


@pytest.mark.parametrize("given", [
    {"receivers": receivers(3), "min_receivers": 3},
    {"min_receivers": 7},
    {"receivers": receivers(15), "min_receivers": 15},
    {"use_random_receivers": True, "min_receivers": 10},
    {"use_random_receivers": True, "max_receivers_count": 15, "min_receivers": 15},
    # random: the fixed list does not bound min_receivers
    {"use_random_receivers": True, "receivers": receivers(3), "min_receivers": 9},
])
def test_min_receivers_at_most_what_an_attempt_can_have(given):
    cfg = GenerationConfig.from_dict(given)
    assert cfg.min_receivers == given["min_receivers"]
    assert cfg.min_receivers <= cfg.max_receivers


# --------------------------------------------------------------------------------------------
# request-scope fields through check_value


@pytest.mark.parametrize("value", [1, 2, 1000, 99_999_999, 100_000_000])
def test_num_samples_accepted(value):
    assert check_value("num_samples", value) == value
    assert type(check_value("num_samples", value)) is int


@pytest.mark.parametrize("value", [0, -1, 100_000_001, 10 ** 12, 1.0, 1.5, 100.0, "100", True,
                                   False, None, NAN, INF, [10]])
def test_num_samples_refused(value):
    err = refused("num_samples", check_value, "num_samples", value)
    if type(value) is int:
        assert "1" in str(err) and f"{100_000_000:g}" in str(err)


@pytest.mark.parametrize("value", [0, 1, 42, 2 ** 32, 2 ** 63 - 1, None])
def test_seed_accepted(value):
    got = check_value("seed", value)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("value", [-1, 2 ** 63, 2 ** 64, 0.0, 1.0, 1.5, "0", "42", True, False,
                                   NAN, INF, [0]])
def test_seed_refused(value):
    refused("seed", check_value, "seed", value)


CANONICAL = "0123abcd-4567-89ef-0123-456789abcdef"


@pytest.mark.parametrize("value", [
    CANONICAL,
    CANONICAL.upper(),
    CANONICAL.replace("-", ""),
    "{" + CANONICAL + "}",
    "urn:uuid:" + CANONICAL,
])
def test_expand_dataset_id_accepted_and_normalised(value):
    assert check_value("expand_dataset_id", value) == CANONICAL


def test_expand_dataset_id_random_uuid_and_null():
    u = uuid.uuid4()
    assert check_value("expand_dataset_id", str(u)) == str(u)
    assert check_value("expand_dataset_id", None) is None


@pytest.mark.parametrize("value", [
    "", "not-a-uuid", CANONICAL[:-1], CANONICAL + "0", CANONICAL.replace("a", "g"),
    CANONICAL.replace("-", "")[:31], "0" * 33, "12345",
    # 31 hex digits dressed up to 32 characters must not become a (different) UUID
    "+" + CANONICAL.replace("-", "")[:31],
    " " + CANONICAL.replace("-", "")[:31],
    CANONICAL.replace("-", "")[:30] + "_" + CANONICAL.replace("-", "")[30],
])
def test_expand_dataset_id_bad_string(value):
    refused("expand_dataset_id", check_value, "expand_dataset_id", value)


@pytest.mark.parametrize("value", ["a", "x" * 100, "My dataset", "é" * 100, "0"])
def test_name_accepted(value):
    assert check_value("name", value) == value


@pytest.mark.parametrize("value", ["", "x" * 101, "é" * 101, None, 5, True, b"name", ["n"]])
def test_name_refused(value):
    err = refused("name", check_value, "name", value)
    if isinstance(value, str):
        assert "1" in str(err) and "100" in str(err)


@pytest.mark.parametrize("value", [None, "", "x" * 10_000])
def test_description_accepted(value):
    assert check_value("description", value) == value


def test_description_too_long():
    refused("description", check_value, "description", "x" * 10_001)


@pytest.mark.parametrize("name", ["max_attempts", "batch_size"])
def test_nullable_job_ints_accept_null_and_refuse_zero(name):
    assert check_value(name, None) is None
    assert check_value(name, 1) == 1
    refused(name, check_value, name, 0)


@pytest.mark.parametrize("value", [None, True, False])
def test_use_gpu_tristate(value):
    assert check_value("use_gpu", value) is value


# --------------------------------------------------------------------------------------------
# iq_raw: the IQ fields belong to that type, and its capture must make sense

def test_iq_raw_takes_the_iq_defaults_and_feature_based_has_none():
    iq = GenerationConfig.from_dict({"dataset_type": "iq_raw"})
    assert (iq.iq_sample_rate_hz, iq.iq_duration_ms, iq.iq_storage, iq.iq_format) == (
        50_000.0, 200.0, "regenerate", "ci16")
    assert iq.iq_capture == 10_000
    plain = GenerationConfig.from_dict({})
    assert all(getattr(plain, name) is None for name in IQ_FIELDS)
    assert plain.iq_capture == 0
    for cfg in (iq, plain):
        assert GenerationConfig.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("name, value", [("iq_sample_rate_hz", 50_000), ("iq_duration_ms", 200),
                                         ("iq_storage", "postgres"), ("iq_format", "cf32")])
def test_iq_fields_are_refused_on_a_feature_based_dataset(name, value):
    err = refused(name, GenerationConfig.from_dict, {name: value})
    assert "iq_raw" in str(err)
    assert getattr(GenerationConfig.from_dict({name: None}), name) is None


@pytest.mark.parametrize("name", IQ_FIELDS)
def test_iq_null_is_the_default_on_an_iq_raw_dataset(name):
    cfg = GenerationConfig.from_dict({"dataset_type": "iq_raw", name: None})
    assert getattr(cfg, name) == D.PARAMS_BY_NAME[name].default


@pytest.mark.parametrize("given, field, words", [
    ({"iq_sample_rate_hz": 10_000}, "iq_sample_rate_hz", "bandwidth_hz"),
    ({"iq_sample_rate_hz": 8_000, "bandwidth_hz": 8_000, "iq_duration_ms": 10,
      "num_chunks": 2}, "iq_duration_ms", "measurement"),
    ({"iq_sample_rate_hz": 2_000_000, "iq_duration_ms": 5_000}, "iq_duration_ms",
     "values per sample"),
])
def test_iq_capture_relations_name_the_field(given, field, words):
    err = refused(field, GenerationConfig.from_dict, {"dataset_type": "iq_raw", **given})
    assert words in str(err)
