"""The schemas of the OpenAPI document: the request body (``generate_request_schema``, GENERATED
from the parameter table ``kernel.defaults.PARAMETERS``: one property per field with its JSON
type, range, default, choices and description, so the document cannot drift from what
``GenerateRequest.from_dict`` accepts), every response body the API sends, and the small helpers
that reference them (``ref``, ``json_response``, ``error_response``)."""

from __future__ import annotations

from typing import Any

from heimdall_synth.kernel.config import plain
from heimdall_synth.kernel.defaults import (PARAMETERS, POLARIZATIONS, RECEIVER_LIMITS, SPLITS,
                                             STATION_ANTENNA_GAIN, STATION_FIELDS, Param)

API = "/api/training/synthetic"

_SCOPE_NOTE = {
    "request": "",
    "data": " [data-defining: an expansion reads it from the dataset; a different value is a "
            "409 unless allow_parameter_override is true]",
    "filter": " [filter: an expansion may set another value for its own job]",
    "job": " [job execution knob, recorded on the job]",
}


def receiver_schema() -> dict:
    return {
        "type": "object", "additionalProperties": False,
        "required": ["name", "lat", "lon", "alt_m"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100,
                     "description": "receiver name, unique within the list"},
            **{k: {"type": "number", "minimum": lo, "maximum": hi,
                   "description": {"lat": "latitude (deg N)", "lon": "longitude (deg E)",
                                   "alt_m": "ground altitude above sea level (m); may be "
                                            "null with a terrain (read from it)"}[k]}
               for k, (lo, hi) in RECEIVER_LIMITS.items()},
            **{k: {"type": "number", "minimum": lo, "maximum": hi,
                   "description": {"antenna_height_m": "antenna height above ground (m)",
                                   "clutter_db": "the station's fixed clutter loss (dB)"}[k]
                   + f"; default {default:g}"}
               for k, (lo, hi, default) in STATION_FIELDS.items()},
            "antenna": {"type": "object", "additionalProperties": False,
                        "description": "the station's own antenna (default omni vertical)",
                        "properties": {
                            "type": {"type": "string", "enum": list(STATION_ANTENNA_GAIN)},
                            "azimuth_deg": {"type": "number", "minimum": 0, "maximum": 360,
                                            "description": "pointing, directional types only"},
                            "gain_dbi": {"type": "number", "description":
                                         "within the type's range; default its middle"},
                            "polarization": {"type": "string", "enum": list(POLARIZATIONS)}}},
        },
    }


def param_schema(p: Param) -> dict:
    """The JSON Schema of one parameter-table field."""
    s: dict[str, Any]
    if p.kind in ("int", "float"):
        s = {"type": "integer" if p.kind == "int" else "number"}
        if p.lo is not None:
            s["exclusiveMinimum" if p.lo_open else "minimum"] = _num(p.lo, p.kind)
        if p.hi is not None:
            s["maximum"] = _num(p.hi, p.kind)
    elif p.kind == "bool":
        s = {"type": "boolean"}
    elif p.kind == "str":
        s = {"type": "string", "minLength": int(p.lo), "maxLength": int(p.hi)}
    elif p.kind == "choice":
        s = {"type": "string", "enum": list(p.choices)}
    elif p.kind == "uuid":
        s = {"type": "string", "format": "uuid"}
    elif p.kind == "receivers":
        s = {"type": "array", "items": {"$ref": "#/components/schemas/Receiver"},
             "minItems": int(p.lo), "maxItems": int(p.hi)}
    elif p.kind == "dist":
        s = {"type": "object", "additionalProperties": False,
             "properties": {c: {"type": "number", "minimum": 0, "maximum": 1}
                            for c in p.choices},
             "description": "shares by type; missing types are 0; they must sum to 1"}
    else:  # pragma: no cover - the table only uses the kinds above
        raise AssertionError(p.kind)
    if p.nullable:
        s["type"] = [s["type"], "null"]
        if "enum" in s:
            s["enum"].append(None)
    doc = p.doc + _SCOPE_NOTE[p.scope]   # the table's text already names computed defaults
    s["description"] = (s.get("description", "") + "; " if "description" in s else "") + doc
    if p.default is not None or p.nullable:
        s["default"] = plain(p.default)
    s["x-scope"] = p.scope
    return s


def _num(value: float, kind: str):
    return int(value) if kind == "int" else float(value)


def generate_request_schema() -> dict:
    """JSON Schema of POST /generate's body, from the parameter table."""
    props = {p.name: param_schema(p) for p in PARAMETERS}
    return {
        "type": "object",
        "title": "GenerateRequest",
        "description": (
            "Create a dataset (name and num_samples required) or expand one (expand_dataset_id "
            "and num_samples required; everything else defaults to the dataset's stored "
            "configuration). Unknown fields, wrong types and out-of-range values are refused "
            "with 422 naming the field; nothing is coerced. Generated from "
            "kernel.defaults.PARAMETERS."),
        "additionalProperties": False,
        "required": [p.name for p in PARAMETERS if p.required],
        "properties": props,
        "if": {"required": ["expand_dataset_id"],
               "properties": {"expand_dataset_id": {"type": "string"}}},
        "then": {},
        "else": {"required": ["name"]},
    }


# ------------------------------------------------------------------------------ response parts

def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def json_response(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_response(description: str) -> dict:
    return json_response(ref("Error"), description)


NULL_NUM = {"type": ["number", "null"]}
NULL_INT = {"type": ["integer", "null"]}
NULL_STR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}


#: Response bodies are closed: every property listed is always sent (except these optional
#: ones) and nothing else is, so checking a response against the document checks it all.
_OPTIONAL = {"Error": ("field", "fields"), "GenerateAccepted": ("notices",),
             "Health": ("message",),
             "Validation": ("iq_captures_expected", "iq_captures_stored", "iq_captures_whole",
                            "iq_captures_agree")}  # iq_raw datasets only
_OPEN = ("GenerateRequest", "Receiver", "DatasetRename", "JobEvent",  # request bodies, events
         "TerrainUpload")


def _closed(schema: dict, optional=()) -> dict:
    schema["additionalProperties"] = False
    schema["required"] = [k for k in schema["properties"] if k not in optional]
    return schema


def _close_responses(schemas: dict) -> dict:
    for name, schema in schemas.items():
        if name not in _OPEN:
            _closed(schema, _OPTIONAL.get(name, ()))
    _closed(schemas["Sample"]["properties"]["receiver_features"]["items"])
    return schemas


def component_schemas() -> dict:
    return _close_responses({
        "GenerateRequest": generate_request_schema(),
        "Receiver": receiver_schema(),
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "machine-readable code, e.g. "
                          "invalid_field, not_found, name_taken, conflicting_override, "
                          "dataset_busy, not_active, not_resumable, malformed_json, "
                          "unsupported_media_type, payload_too_large, unauthorized, forbidden, "
                          "method_not_allowed, internal_error"},
                "message": {"type": "string", "description": "what is wrong, for a person"},
                "field": {"type": "string", "description": "the field at fault, when one is"},
                "fields": {"type": "array", "items": {"type": "string"},
                           "description": "409 only: every conflicting field"},
            }},
        "GenerateAccepted": {
            "type": "object",
            "required": ["job_id", "dataset_id", "status", "status_url", "events_url"],
            "properties": {
                "job_id": {"type": "string", "format": "uuid"},
                "dataset_id": {"type": "string", "format": "uuid"},
                "status": {"type": "string", "enum": ["pending", "queued", "running"]},
                "status_url": {"type": "string"}, "events_url": {"type": "string"},
                "kind": {"type": "string", "enum": ["create", "expand"]},
                "overrides": {"type": "object", "description": "fields this job runs with a "
                              "value other than the dataset's: {field: {dataset, job}}"},
                "notices": {"type": "array", "items": {"type": "string"},
                            "description": "things worth knowing about how the request was "
                                           "read, e.g. that an expansion's name and "
                                           "description do not rename the dataset"},
            }},
        "Job": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "dataset_id": {"type": "string", "format": "uuid"},
                "kind": {"type": "string", "enum": ["create", "expand"]},
                "status": {"type": "string", "enum": ["pending", "queued", "running",
                                                      "completed", "failed", "cancelled",
                                                      "interrupted"]},
                "progress": {"type": "string", "description": "cumulative: '1,005 / 1,005 "
                             "(continued from 5)'"},
                "progress_message": NULL_STR,
                "requested": {"type": "integer", "description": "new samples asked for"},
                "generated": {"type": "integer", "description": "new samples committed"},
                "attempted": {"type": "integer"},
                "success_rate": {**NULL_NUM, "description": "generated / attempted (0-1)"},
                "rejections": {"type": "object", "additionalProperties": {"type": "integer"},
                               "description": "rejected attempts by reason"},
                "samples_offset": {**NULL_INT, "description": "dataset count before the job "
                                   "(null until it starts)"},
                "target_count": {"type": "integer"},
                "committed_count": {"type": "integer"},
                "dataset_num_samples": NULL_INT,
                "stopped_reason": {"type": ["string", "null"], "enum": [
                    "target_reached", "max_attempts", "stalled", "cancelled", "failed",
                    "interrupted", None]},
                "stop_message": NULL_STR, "error": NULL_STR,
                "cancel_requested": {"type": "boolean"},
                "consecutive_rejections": NULL_INT,
                "device": NULL_STR,
                "overrides": {"type": "object"},
                "config": {"type": "object", "description": "{config, seed, options, request}"},
                "created_at": TIME, "started_at": TIME, "finished_at": TIME,
                "heartbeat_at": TIME,
                "duration_s": NULL_NUM, "samples_per_second": NULL_NUM,
                "status_url": {"type": "string"}, "events_url": {"type": "string"},
            }},
        "JobEvent": {
            "type": "object", "additionalProperties": False,
            "description": "one server-sent event (OpenAPI 3.1: the schema of each event); the "
                           "stream opens with 'retry: 3000' and may carry ': keep-alive' "
                           "comments",
            "dependentRequired": {"event": ["data", "id"]},
            "properties": {
                "event": {"type": "string",
                          "enum": ["status", "progress", "batch", "final", "error"]},
                "data": {"type": "string", "contentMediaType": "application/json",
                         "contentSchema": {"type": "object"},
                         "description": "a JSON object; for 'final' the Job record; for "
                                        "'error' (the job was deleted, or the database did "
                                        "not answer; the stream then ends) the Error body"},
                "id": {"type": "string", "pattern": "^[0-9]+$",
                       "description": "sequence number of the event in this stream"},
                "retry": {"type": "integer", "minimum": 0}},
            "allOf": [
                {"if": {"required": ["event"], "properties": {"event": {"const": "final"}}},
                 "then": {"properties": {"data": {"contentSchema": ref("Job")}}}},
                {"if": {"required": ["event"], "properties": {"event": {"const": "error"}}},
                 "then": {"properties": {"data": {"contentSchema": ref("Error")}}}}]},
        "JobList": {"type": "object", "properties": {
            "jobs": {"type": "array", "items": ref("Job")}, "count": {"type": "integer"},
            "limit": {"type": "integer"}}},
        "Dataset": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"}, "description": NULL_STR,
                "dataset_type": {"type": "string"},
                "seed": {"type": "integer", "minimum": 0},
                "num_samples": {"type": "integer", "description": "metadata count"},
                "metadata_count": {"type": "integer", "description": "= num_samples"},
                "actual_count": {"type": "integer", "description": "COUNT(*) of its rows"},
                "counts_agree": {"type": "boolean"},
                "next_attempt_index": {"type": "integer"},
                "quality_metrics": {"type": "object"},
                "storage_size_bytes": NULL_INT,
                "model_version": {"type": "integer", "description": "version of the physics "
                                  "that generated the dataset (docs/MODEL.md)"},
                "terrain_sha256": {"type": ["string", "null"],
                                   "description": "SHA-256 of the terrain's grid, if any"},
                "config": {"type": "object", "description": "the full effective configuration"},
                "created_at": TIME, "updated_at": TIME,
                "created_by_job_id": {"type": ["string", "null"], "format": "uuid"},
                "devices": {"type": "array", "items": {"type": "string"},
                            "description": "the devices (as its jobs recorded them) that "
                                           "produced its samples (docs/GPU.md)"},
                "url": {"type": "string"}, "samples_url": {"type": "string"},
                "jobs_url": {"type": "string"},
            }},
        "DatasetList": {"type": "object", "properties": {
            "datasets": {"type": "array", "items": ref("Dataset")},
            "count": {"type": "integer"}}},
        "DatasetRename": {"type": "object", "additionalProperties": False, "required": ["name"],
                          "properties": {"name": param_schema(
                              next(p for p in PARAMETERS if p.name == "name"))}},
        "DatasetDeleted": {"type": "object", "properties": {
            "id": {"type": "string", "format": "uuid"}, "deleted": {"type": "boolean"}}},
        "Sample": {
            "type": "object",
            "description": "a row of heimdall.measurement_features_json (non-finite values "
                           "such as an infinite GDOP or CRB are null)",
            "properties": {
                "recording_session_id": {"type": "string", "format": "uuid"},
                "dataset_id": {"type": "string", "format": "uuid"},
                "sample_index": {"type": "integer"}, "attempt_index": {"type": "integer"},
                "job_id": {"type": ["string", "null"], "format": "uuid"},
                "created_at": TIME,
                **{k: NULL_NUM for k in (
                    "tx_latitude", "tx_longitude", "tx_altitude_m", "tx_power_dbm",
                    "frequency_hz", "mean_snr_db", "gdop", "hdop", "crb_m",
                    "overall_confidence")},
                "tx_known": {"type": ["boolean", "null"]},
                "num_receivers_in_sample": NULL_INT, "num_receivers_detected": NULL_INT,
                "split": {"type": "string", "enum": list(SPLITS),
                          "description": "the sample's split, by its spatial cell"},
                "receiver_features": {"type": "array", "items": {
                    "type": "object", "properties": {
                        "rx_id": {"type": "integer"}, "signal_present": {"type": "boolean"},
                        **{k: NULL_NUM for k in (
                            "lat", "lon", "alt_m", "distance_km", "rssi_dbm", "snr_db",
                            "rssi_std_db", "rssi_min_dbm", "rssi_max_dbm", "noise_floor_dbm",
                            "psd_dbm_per_hz", "freq_offset_hz")}}}},
            }},
        "SamplePage": {"type": "object", "properties": {
            "dataset_id": {"type": "string", "format": "uuid"},
            "limit": {"type": "integer"}, "offset": {"type": "integer"},
            "split": {"type": "string", "enum": ["all", *SPLITS]},
            "num_samples": {"type": "integer", "description": "samples of the split asked for"},
            "count": {"type": "integer"}, "next_offset": NULL_INT,
            "samples": {"type": "array", "items": ref("Sample")}}},
        "Validation": {"type": "object", "properties": {
            "dataset_id": {"type": "string", "format": "uuid"},
            "metadata_count": {"type": "integer"}, "actual_count": {"type": "integer"},
            "counts_agree": {"type": "boolean"}, "min_sample_index": NULL_INT,
            "max_sample_index": NULL_INT, "index_dense": {"type": "boolean"},
            "duplicate_indices": {"type": "integer"}, "next_attempt_index": {"type": "integer"},
            "iq_captures_expected": {"type": "integer", "description": "iq_raw only: captures "
                                     "the samples stored with iq_storage postgres must have "
                                     "(one per receiver)"},
            "iq_captures_stored": {"type": "integer", "description": "iq_raw only: captures "
                                   "in the table"},
            "iq_captures_whole": {"type": "integer", "description": "iq_raw only: stored "
                                  "captures of a receiver of their sample, a whole capture long"},
            "iq_captures_agree": {"type": "boolean", "description": "iq_raw only: the three "
                                  "counts are equal"},
            "ok": {"type": "boolean"}}},
        "BaselineRun": baseline_run_schema(),
        "BaselineRuns": {"type": "object", "properties": {
            "dataset_id": {"type": "string", "format": "uuid"},
            "runs": {"type": "array", "items": ref("BaselineRun")},
            "count": {"type": "integer"}}},
        "Terrain": terrain_schema(),
        "TerrainList": {"type": "object", "properties": {
            "terrains": {"type": "array", "items": ref("Terrain")}}},
        "TerrainUpload": terrain_upload_schema(),
        "Health": {"type": "object", "required": ["status", "version"], "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": {"type": "string", "enum": ["ok", "unreachable"]},
            "version": {"type": "string"}, "schema_version": NULL_INT,
            "active_jobs": {"type": "integer"}, "message": {"type": "string"}}},
    })


def baseline_run_schema() -> dict:
    """A stored run of the baseline localizer (docs/TRAINING.md), without its per-sample
    errors."""
    metres = {"type": "number", "minimum": 0}
    count = {"type": "integer", "minimum": 0}
    return {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"},
        "dataset_id": {"type": "string", "format": "uuid"},
        "created_at": {"type": "string", "format": "date-time"},
        "method": {"type": "string", "description": "the model and its settings, in words"},
        "params": {"type": "object", "description": "the model's settings and inputs"},
        "seed": count, "model_version": {"type": "integer"},
        "dataset_samples": {**count, "description": "the dataset's samples when it ran"},
        "train_samples": count, "test_samples": count,
        "median_error_m": {**metres, "description": "median localization error on the test "
                           "split"},
        "p90_error_m": {**metres, "description": "its 90th percentile"},
        "centre_median_error_m": {**metres, "description": "median error of predicting the "
                                  "train split's mean position"},
        "centre_p90_error_m": metres,
        "median_crb_m": {"type": ["number", "null"], "description": "median RSS Cramer-Rao "
                         "bound of the test samples (finite ones)"},
        "median_gdop": NULL_NUM,
        "train_seconds": metres, "total_seconds": metres}}


def terrain_schema() -> dict:
    """A registered terrain (storage.terrains.describe): placement, spacing, size, hash."""
    deg = {"type": "number"}
    return {
        "type": "object",
        "description": "a registered elevation grid; latitudes and longitudes are those of the "
                       "cell centres (degrees, WGS 84 or the datum of the files)",
        "properties": {
            "name": {"type": "string"},
            "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$",
                       "description": "SHA-256 of the grid's placement, spacing and heights"},
            "north": {**deg, "description": "latitude of the first (northernmost) row"},
            "west": {**deg, "description": "longitude of the first (westernmost) column"},
            "dlat": {"type": "number", "exclusiveMinimum": 0,
                     "description": "degrees between rows"},
            "dlon": {"type": "number", "exclusiveMinimum": 0,
                     "description": "degrees between columns"},
            "rows": {"type": "integer", "minimum": 2}, "cols": {"type": "integer", "minimum": 2},
            "sources": {"type": "array", "items": {"type": "string"},
                        "description": "the names of the files it was made from"},
            "created_at": TIME,
            "south": {**deg, "description": "latitude of the last row"},
            "east": {**deg, "description": "longitude of the last column"},
            "spacing_arcsec": {"type": "number", "description": "dlat in arc-seconds"},
        }}


def terrain_upload_schema() -> dict:
    """The multipart/form-data body of POST /terrains."""
    from heimdall_synth.service.http.terrain_routes import MAX_FILES
    return {
        "type": "object", "additionalProperties": False, "required": ["name", "files"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100,
                     "description": "the terrain's name, unique (no NUL, no lone surrogate)"},
            "files": {"type": "array", "minItems": 1, "maxItems": MAX_FILES,
                      "items": {"type": "string", "format": "binary",
                                "contentMediaType": "application/octet-stream"},
                      "description": "SRTM .hgt tiles (named after their south-west corner, "
                                     "N45E007.hgt) and GeoTIFF files (.tif, .tiff: geographic "
                                     "CRS, north-up, one band, no nodata cells) on one "
                                     "lattice, merged into one grid. Each part's file name "
                                     "(its base name; folders are dropped) is kept."},
        }}
