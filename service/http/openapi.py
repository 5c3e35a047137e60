"""The OpenAPI 3.1 document of the HTTP API (GET /api/openapi.json).

The ``GenerateRequest`` schema is GENERATED from ``kernel.defaults.PARAMETERS``: one property per
table field with its JSON type, range, default, choices and description, so the document cannot
drift from what ``GenerateRequest.from_dict`` accepts. The rest (paths, responses) is written
here; ``tests/test_http_openapi.py`` keeps every Flask route in the document and vice versa.
"""

from __future__ import annotations

from typing import Any

from heimdall_synth.kernel.config import plain
from heimdall_synth.kernel.defaults import PARAMETERS, RECEIVER_LIMITS, Param
from heimdall_synth.service.report import PLOTS

API = "/api/training/synthetic"

_SCOPE_NOTE = {
    "request": "",
    "data": " [data-defining: an expansion reads it from the dataset; a different value is a "
            "409 unless allow_parameter_override is true]",
    "filter": " [filter: an expansion may set another value for its own job]",
    "job": " [job execution knob, recorded on the job]",
}
#: Per-receiver limits checked by kernel.config (receivers items).



def receiver_schema() -> dict:
    return {
        "type": "object", "additionalProperties": False,
        "required": ["name", "lat", "lon", "alt_m"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 100,
                     "description": "receiver name, unique within the list"},
            **{k: {"type": "number", "minimum": lo, "maximum": hi,
                   "description": {"lat": "latitude (deg N)", "lon": "longitude (deg E)",
                                   "alt_m": "altitude above sea level (m)"}[k]}
               for k, (lo, hi) in RECEIVER_LIMITS.items()},
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

def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict:
    return _json(_ref("Error"), description)


NULL_NUM = {"type": ["number", "null"]}
NULL_INT = {"type": ["integer", "null"]}
NULL_STR = {"type": ["string", "null"]}
TIME = {"type": ["string", "null"], "format": "date-time"}


#: Response bodies are closed: every property listed is always sent (except these optional
#: ones) and nothing else is, so checking a response against the document checks it all.
_OPTIONAL = {"Error": ("field", "fields"), "GenerateAccepted": ("notices",),
             "Health": ("message",)}
_OPEN = ("GenerateRequest", "Receiver", "DatasetRename", "JobEvent")  # request bodies, events


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


def _schemas() -> dict:
    return _close_responses({
        "GenerateRequest": generate_request_schema(),
        "Receiver": receiver_schema(),
        "Error": {
            "type": "object", "required": ["error", "message"],
            "properties": {
                "error": {"type": "string", "description": "machine-readable code, e.g. "
                          "invalid_field, not_found, name_taken, conflicting_override, "
                          "dataset_busy, not_active, not_resumable, malformed_json, "
                          "unsupported_media_type, unauthorized, forbidden, method_not_allowed, "
                          "internal_error"},
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
                 "then": {"properties": {"data": {"contentSchema": _ref("Job")}}}},
                {"if": {"required": ["event"], "properties": {"event": {"const": "error"}}},
                 "then": {"properties": {"data": {"contentSchema": _ref("Error")}}}}]},
        "JobList": {"type": "object", "properties": {
            "jobs": {"type": "array", "items": _ref("Job")}, "count": {"type": "integer"},
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
                "config": {"type": "object", "description": "the full effective configuration"},
                "created_at": TIME, "updated_at": TIME,
                "created_by_job_id": {"type": ["string", "null"], "format": "uuid"},
                "url": {"type": "string"}, "samples_url": {"type": "string"},
                "jobs_url": {"type": "string"},
            }},
        "DatasetList": {"type": "object", "properties": {
            "datasets": {"type": "array", "items": _ref("Dataset")},
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
            "num_samples": {"type": "integer"}, "count": {"type": "integer"},
            "next_offset": NULL_INT,
            "samples": {"type": "array", "items": _ref("Sample")}}},
        "Validation": {"type": "object", "properties": {
            "dataset_id": {"type": "string", "format": "uuid"},
            "metadata_count": {"type": "integer"}, "actual_count": {"type": "integer"},
            "counts_agree": {"type": "boolean"}, "min_sample_index": NULL_INT,
            "max_sample_index": NULL_INT, "index_dense": {"type": "boolean"},
            "duplicate_indices": {"type": "integer"}, "next_attempt_index": {"type": "integer"},
            "ok": {"type": "boolean"}}},
        "Health": {"type": "object", "required": ["status", "version"], "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": {"type": "string", "enum": ["ok", "unreachable"]},
            "version": {"type": "string"}, "schema_version": NULL_INT,
            "active_jobs": {"type": "integer"}, "message": {"type": "string"}}},
    })


def _path_id(name: str, what: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": {"type": "string", "format": "uuid"}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_WRITE = [{"bearerAuth": []}, {}]  # token needed only when the server has one
_422 = _err("a field, path or query parameter is invalid (names it)")
_404 = _err("no such job or dataset")


_503 = _err("the database does not answer (database_unavailable); try again later")
_LOCATION = {"Location": {"description": "the job's status_url", "required": True,
                          "schema": {"type": "string"}}}
#: cancel and resume take no body: none, or an empty JSON object.
_NO_BODY = {"type": "object", "maxProperties": 0, "additionalProperties": False}


def _op(summary: str, responses: dict, *, tag: str, op_id: str, params=None, body=None,
        write=False, description: str | None = None, body_required=True, db=True) -> dict:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "tags": [tag],
                          "responses": responses}
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = {"required": body_required,
                             "content": {"application/json": {"schema": body}}}
    if write:
        op["security"] = _WRITE
        responses.setdefault("401", _err("a token is configured and none was sent"))
        responses.setdefault("403", _err("the token is wrong"))
    # Every route refuses query parameters it does not take (422 naming them), and the one
    # error handler answers 503 when the database does not answer.
    responses.setdefault("422", _422)
    if db:
        responses.setdefault("503", _503)
    return op


def _paths() -> dict:
    job_id = _path_id("job_id", "job")
    ds_id = _path_id("dataset_id", "dataset")
    body_errors = {"400": _err("malformed JSON"),
                   "413": _err("the body is larger than the limit (1 MiB by default)"),
                   "415": _err("the body is not Content-Type: application/json")}
    return {
        "/api/health": {"get": _op(
            "Service and database health", {
                "200": _json(_ref("Health"), "the service and its database are up"),
                "503": _json(_ref("Health"), "the database does not answer")},
            tag="meta", op_id="health")},
        "/api/openapi.json": {"get": _op(
            "This document", {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {}}}},
            tag="meta", op_id="openapi", db=False)},
        f"{API}/generate": {"post": _op(
            "Create a dataset or expand one (runs in the background)", {
                "202": {**_json(_ref("GenerateAccepted"), "the job is accepted; follow "
                                "status_url or events_url"), "headers": _LOCATION},
                **body_errors, "404": _err("expand_dataset_id names no dataset"),
                "409": _err("name taken (name_taken) or an expansion changes data-defining "
                            "fields without allow_parameter_override (conflicting_override)"),
                "422": _422},
            tag="jobs", op_id="generate", body=_ref("GenerateRequest"), write=True,
            description="For an expansion, name and description (if sent) are validated and "
                        "otherwise ignored: they neither rename nor re-describe the dataset "
                        "(use PATCH /datasets/{dataset_id} to rename).")},
        f"{API}/jobs": {"get": _op(
            "List jobs, newest first", {"200": _json(_ref("JobList"), "jobs"), "404": _404,
                                        "422": _422},
            tag="jobs", op_id="listJobs", params=[
                _query("dataset_id", {"type": "string", "format": "uuid"},
                       "only this dataset's jobs"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 100}, "at most this many")])},
        f"{API}/jobs/{{job_id}}": {"get": _op(
            "A job's record with cumulative progress", {
                "200": _json(_ref("Job"), "the job"), "404": _404, "422": _422},
            tag="jobs", op_id="getJob", params=[job_id])},
        f"{API}/jobs/{{job_id}}/cancel": {"post": _op(
            "Cancel a pending, queued or running job (it stops after its current batch)", {
                "202": _json(_ref("Job"), "cancel requested; the record as it is now"),
                "404": _404, "409": _err("the job is not active (not_active)"), "422": _422,
                **body_errors},
            tag="jobs", op_id="cancelJob", params=[job_id], write=True, body=_NO_BODY,
            body_required=False)},
        f"{API}/jobs/{{job_id}}/resume": {"post": _op(
            "Resume an interrupted, cancelled or failed job to its original target", {
                "202": {**_json(_ref("GenerateAccepted"), "the job runs again"),
                        "headers": _LOCATION},
                "404": _404, "409": _err("the job cannot be resumed (not_resumable)"),
                "422": _422, **body_errors},
            tag="jobs", op_id="resumeJob", params=[job_id], write=True, body=_NO_BODY,
            body_required=False)},
        f"{API}/jobs/{{job_id}}/events": {"get": _op(
            "The job's progress as server-sent events", {
                "200": {"description": "text/event-stream of events 'status', 'progress' (at "
                                       "least once a second while active), 'batch' (one per "
                                       "committed batch), 'final' (the Job record; the "
                                       "stream then ends) and 'error' (the job was deleted "
                                       "or the database did not answer; the stream then "
                                       "ends)",
                        "content": {"text/event-stream": {"schema": _ref("JobEvent")}}},
                "404": _404, "422": _422,
                "503": _err("the server holds its limit of open event streams "
                            "(too_many_streams; Retry-After says when to retry, or poll "
                            "GET /jobs/{job_id}), or the database does not answer "
                            "(database_unavailable)")},
            tag="jobs", op_id="jobEvents", params=[job_id])},
        f"{API}/datasets": {"get": _op(
            "List datasets with metadata and actual counts", {
                "200": _json(_ref("DatasetList"), "datasets")},
            tag="datasets", op_id="listDatasets")},
        f"{API}/datasets/{{dataset_id}}": {
            "get": _op("A dataset with its metadata and actual counts", {
                "200": _json(_ref("Dataset"), "the dataset"), "404": _404, "422": _422},
                tag="datasets", op_id="getDataset", params=[ds_id]),
            "patch": _op("Rename a dataset", {
                "200": _json(_ref("Dataset"), "renamed"), "404": _404,
                "409": _err("another dataset has this name (name_taken)"), "422": _422,
                **body_errors},
                tag="datasets", op_id="renameDataset", params=[ds_id],
                body=_ref("DatasetRename"), write=True),
            "delete": _op("Delete a dataset and its samples", {
                "200": _json(_ref("DatasetDeleted"), "deleted"), "404": _404,
                "409": _err("a job on it is pending, queued or running (dataset_busy)"),
                "422": _422},
                tag="datasets", op_id="deleteDataset", params=[ds_id], write=True)},
        f"{API}/datasets/{{dataset_id}}/samples": {"get": _op(
            "A page of samples (rows of heimdall.measurement_features_json) by sample_index", {
                "200": _json(_ref("SamplePage"), "the page"), "404": _404, "422": _422},
            tag="datasets", op_id="listSamples", params=[
                ds_id,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 100}, "rows per page"),
                _query("offset", {"type": "integer", "minimum": 0, "default": 0},
                       "rows to skip")])},
        f"{API}/datasets/{{dataset_id}}/validate": {"get": _op(
            "Check a dataset: metadata vs actual count, index density, duplicates", {
                "200": _json(_ref("Validation"), "the checks"), "404": _404, "422": _422},
            tag="datasets", op_id="validateDataset", params=[ds_id])},
        f"{API}/datasets/{{dataset_id}}/export": {"get": _op(
            "The dataset as one file for training (Parquet or NPZ), streamed", {
                "200": {"description": "the file, read from one snapshot of the dataset, rows "
                                       "by sample_index (docs/EXPORT.md)",
                        "headers": {
                            "Content-Disposition": {"description": "attachment; the file name "
                                                    "is the dataset's name", "required": True,
                                                    "schema": {"type": "string"}},
                            "X-Dataset-Rows": {"description": "rows in the file",
                                               "required": True,
                                               "schema": {"type": "string",
                                                          "pattern": "^[0-9]+$"}}},
                        "content": {media: {"schema": {"type": "string",
                                                       "contentMediaType": media}}
                                    for media in ("application/vnd.apache.parquet",
                                                  "application/zip")}},
                "404": _err("no such dataset"),
                "409": _err("a stored row cannot be exported (not_exportable: a NULL value or "
                            "receiver arrays of different lengths; field: the column)"),
                "422": _422,
                "503": _err("the server already streams its limit of exports "
                            "(too_many_exports; Retry-After says when to retry), or the "
                            "database does not answer (database_unavailable)")},
            tag="datasets", op_id="exportDataset", params=[
                ds_id,
                _query("format", {"type": "string", "enum": ["parquet", "npz"],
                                  "default": "parquet"},
                       "parquet: one row group per chunk, per-receiver columns "
                       "fixed_size_list; npz: one .npy per column (N or N x R) and "
                       "metadata.json, loadable with numpy.load")],
            description="Parquet streams from the first row group; NPZ starts once every "
                        "column has been read (to temporary files). Memory stays bounded "
                        "whatever the dataset's size.")},
        f"{API}/datasets/{{dataset_id}}/report/{{plot}}.png": {"get": _op(
            "One plot of the dataset's report as a PNG image", {
                "200": {"description": "the plot (an empty dataset gives a plot that says so)",
                        "content": {"image/png": {"schema": {
                            "type": "string", "contentMediaType": "image/png"}}}},
                "404": _err("no such dataset (field dataset_id) or plot (field plot)"),
                "422": _422},
            tag="datasets", op_id="datasetReportPlot", params=[ds_id, {
                "name": "plot", "in": "path", "required": True,
                "description": "which plot: " + "; ".join(f"{k}: {v}" for k, v in PLOTS.items()),
                "schema": {"type": "string", "enum": list(PLOTS)}}],
            description="The HTML page GET /datasets/{dataset_id}/report (not part of this "
                        "API) shows every plot with the dataset's metadata.")},
    }


def build_openapi(version: str = "0.1.0") -> dict:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "heimdall-synth",
            "version": version,
            "description": "Synthetic training data for RF transmitter localization: create "
                           "and expand datasets, follow their jobs, read their samples. Errors "
                           "are {\"error\": code, \"message\": text, \"field\": name?}.",
        },
        "tags": [{"name": "jobs"}, {"name": "datasets"}, {"name": "meta"}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "Needed on POST/PATCH/DELETE when the server runs with "
                               "HEIMDALL_SYNTH_API_TOKEN set; GETs never need it."}},
        },
    }
