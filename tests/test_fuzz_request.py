"""Hostile input to the request model (issue 5, first part): generated requests never raise
anything but ConfigError naming a field, accepted ones round-trip, and dataset names with
quotes, semicolons, unicode and SQL fragments are stored and returned verbatim."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from heimdall_synth.kernel import ConfigError, GenerationConfig
from heimdall_synth.kernel.defaults import PARAMETERS
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.engine.request import GenerateRequest

FIELDS = [p.name for p in PARAMETERS]
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers(-10**30, 10**30)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=4),
    max_leaves=12)
# Mostly real field names (so validation gets deep), sometimes anything at all.
KEYS = st.sampled_from(FIELDS) | st.text(max_size=20)
REQUESTS = st.dictionaries(KEYS, JSONISH, max_size=8)


def accepted_or_refused(parse, request: dict):
    """``parse(request)``, or None after checking the refusal is a ConfigError that says what
    is wrong and names a field that was sent (or a known one)."""
    try:
        return parse(request)
    except ConfigError as exc:
        assert exc.message, "a refusal must say what is wrong"
        if exc.field is not None:
            top = exc.field.split("[")[0].split(".")[0]
            assert exc.field in request or top in FIELDS, f"{exc.field!r} names nothing sent"
        return None


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(REQUESTS)
def test_config_from_dict_accepts_or_names_the_field(request):
    cfg = accepted_or_refused(GenerationConfig.from_dict, request)
    if cfg is None:
        return
    # accepted: JSON round trip gives the same configuration, with only finite numbers
    again = GenerationConfig.from_dict(json.loads(json.dumps(cfg.to_dict(), allow_nan=False)))
    assert again == cfg
    assert all(math.isfinite(v) for v in cfg.to_dict().values()
               if isinstance(v, float))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.fixed_dictionaries({"num_samples": st.integers(-5, 10**9) | JSONISH},
                             optional={"name": st.text(max_size=120) | JSONISH}).flatmap(
    lambda base: st.dictionaries(KEYS, JSONISH, max_size=6).map(lambda extra: {**extra, **base})))
def test_generate_request_accepts_or_names_the_field(request):
    parsed = accepted_or_refused(GenerateRequest.from_dict, request)
    if parsed is None:
        return
    assert 1 <= parsed.num_samples <= 100_000_000
    assert parsed.is_expansion or isinstance(parsed.given["name"], str)


HOSTILE_NAMES = ["O'Brien's \"set\"", "x; DROP TABLE heimdall.measurement_features; --",
                 "Robert'); DELETE FROM heimdall.synthetic_datasets;--", "ünïcødé 你好 🛰️",
                 "tab\there", "back\\slash %s %(x)s {}", "$$ plpgsql $$", "a" * 100]


def test_hostile_names_are_stored_and_returned_verbatim(conn):
    for name in HOSTILE_NAMES:
        created = jobs.create_job(conn, GenerateRequest.from_dict(
            {"name": name, "num_samples": 1, "description": name[::-1]}))
        stored = datasets.get_dataset(conn, created["dataset_id"])
        assert (stored["name"], stored["description"]) == (name, name[::-1])
        assert datasets.find_dataset(conn, name)["id"] == stored["id"]
    assert len(datasets.list_datasets(conn)) == len(HOSTILE_NAMES)
