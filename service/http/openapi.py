"""The OpenAPI 3.1 document of the HTTP API (GET /api/openapi.json).

The paths and their responses are written here; the schemas (the request body, generated from
the parameter table, and every response body) are in ``openapi_schemas``.
``tests/test_http_openapi.py`` keeps every Flask route in the document and vice versa.
"""

from __future__ import annotations

from typing import Any

from heimdall_synth.service.http.openapi_schemas import (API, component_schemas, error_response,
                                                         json_response, ref)
from heimdall_synth.service.http.relief_routes import BOUNDS as RELIEF_BOUNDS
from heimdall_synth.kernel.defaults import SPLITS
from heimdall_synth.service.report import PLOTS


def _path_id(name: str, what: str) -> dict:
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id",
            "schema": {"type": "string", "format": "uuid"}}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


_WRITE = [{"bearerAuth": []}, {}]  # token needed only when the server has one
_422 = error_response("a field, path or query parameter is invalid (names it)")
_404 = error_response("no such job or dataset")


_503 = error_response("the database does not answer (database_unavailable); try again later")
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
        responses.setdefault("401", error_response("a token is configured and none was sent"))
        responses.setdefault("403", error_response("the token is wrong"))
    # Every route refuses query parameters it does not take (422 naming them), and the one
    # error handler answers 503 when the database does not answer.
    responses.setdefault("422", _422)
    if db:
        responses.setdefault("503", _503)
    return op


def _paths() -> dict:
    job_id = _path_id("job_id", "job")
    ds_id = _path_id("dataset_id", "dataset")
    body_errors = {"400": error_response("malformed JSON"),
                   "413": error_response("the body is larger than the limit (1 MiB by default)"),
                   "415": error_response("the body is not Content-Type: application/json")}
    return {
        "/api/health": {"get": _op(
            "Service and database health", {
                "200": json_response(ref("Health"), "the service and its database are up"),
                "503": json_response(ref("Health"), "the database does not answer")},
            tag="meta", op_id="health")},
        "/api/openapi.json": {"get": _op(
            "This document", {"200": {"description": "OpenAPI 3.1 document",
                                      "content": {"application/json": {}}}},
            tag="meta", op_id="openapi", db=False)},
        f"{API}/generate": {"post": _op(
            "Create a dataset or expand one (runs in the background)", {
                "202": {**json_response(ref("GenerateAccepted"), "the job is accepted; follow "
                                        "status_url or events_url"), "headers": _LOCATION},
                **body_errors, "404": error_response("expand_dataset_id names no dataset"),
                "409": error_response(
                    "name taken (name_taken) or an expansion changes data-defining fields "
                    "without allow_parameter_override (conflicting_override)"),
                "422": _422},
            tag="jobs", op_id="generate", body=ref("GenerateRequest"), write=True,
            description="For an expansion, name and description (if sent) are validated and "
                        "otherwise ignored: they neither rename nor re-describe the dataset "
                        "(use PATCH /datasets/{dataset_id} to rename).")},
        f"{API}/jobs": {"get": _op(
            "List jobs, newest first", {"200": json_response(ref("JobList"), "jobs"), "404": _404,
                                        "422": _422},
            tag="jobs", op_id="listJobs", params=[
                _query("dataset_id", {"type": "string", "format": "uuid"},
                       "only this dataset's jobs"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 100}, "at most this many")])},
        f"{API}/jobs/{{job_id}}": {"get": _op(
            "A job's record with cumulative progress", {
                "200": json_response(ref("Job"), "the job"), "404": _404, "422": _422},
            tag="jobs", op_id="getJob", params=[job_id])},
        f"{API}/jobs/{{job_id}}/cancel": {"post": _op(
            "Cancel a pending, queued or running job (it stops after its current batch)", {
                "202": json_response(ref("Job"), "cancel requested; the record as it is now"),
                "404": _404, "422": _422,
                 "409": error_response("the job is not active (not_active)"),
                **body_errors},
            tag="jobs", op_id="cancelJob", params=[job_id], write=True, body=_NO_BODY,
            body_required=False)},
        f"{API}/jobs/{{job_id}}/resume": {"post": _op(
            "Resume an interrupted, cancelled or failed job to its original target", {
                "202": {**json_response(ref("GenerateAccepted"), "the job runs again"),
                        "headers": _LOCATION},
                "404": _404, "409": error_response("the job cannot be resumed (not_resumable)"),
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
                        "content": {"text/event-stream": {"schema": ref("JobEvent")}}},
                "404": _404, "422": _422,
                "503": error_response("the server holds its limit of open event streams "
                                      "(too_many_streams; Retry-After says when to retry, or poll "
                            "GET /jobs/{job_id}), or the database does not answer "
                            "(database_unavailable)")},
            tag="jobs", op_id="jobEvents", params=[job_id])},
        f"{API}/datasets": {"get": _op(
            "List datasets with metadata and actual counts", {
                "200": json_response(ref("DatasetList"), "datasets")},
            tag="datasets", op_id="listDatasets")},
        f"{API}/datasets/{{dataset_id}}": {
            "get": _op("A dataset with its metadata and actual counts", {
                "200": json_response(ref("Dataset"), "the dataset"), "404": _404, "422": _422},
                tag="datasets", op_id="getDataset", params=[ds_id]),
            "patch": _op("Rename a dataset", {
                "200": json_response(ref("Dataset"), "renamed"), "404": _404,
                "409": error_response("another dataset has this name (name_taken)"), "422": _422,
                **body_errors},
                tag="datasets", op_id="renameDataset", params=[ds_id],
                body=ref("DatasetRename"), write=True),
            "delete": _op("Delete a dataset and its samples", {
                "200": json_response(ref("DatasetDeleted"), "deleted"), "404": _404,
                "409": error_response("a job on it is pending, queued or running (dataset_busy)"),
                "422": _422},
                tag="datasets", op_id="deleteDataset", params=[ds_id], write=True)},
        f"{API}/datasets/{{dataset_id}}/samples": {"get": _op(
            "A page of samples (rows of heimdall.measurement_features_json) by sample_index", {
                "200": json_response(ref("SamplePage"), "the page"), "404": _404, "422": _422},
            tag="datasets", op_id="listSamples", params=[
                ds_id,
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000,
                                 "default": 100}, "rows per page"),
                _query("offset", {"type": "integer", "minimum": 0, "default": 0},
                       "rows to skip"),
                _query("split", {"type": "string", "enum": list(SPLITS)},
                       "only the samples of this split (default: all)")])},
        f"{API}/datasets/{{dataset_id}}/validate": {"get": _op(
            "Check a dataset: metadata vs actual count, index density, duplicates", {
                "200": json_response(ref("Validation"), "the checks"), "404": _404, "422": _422},
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
                "404": error_response("no such dataset"),
                "409": error_response(
                    "a stored row cannot be exported (not_exportable: a NULL value or "
                    "receiver arrays of different lengths; field: the column)"),
                "422": _422,
                "503": error_response("the server already streams its limit of exports "
                                      "(too_many_exports; Retry-After says when to retry), or the "
                            "database does not answer (database_unavailable)")},
            tag="datasets", op_id="exportDataset", params=[
                ds_id,
                _query("format", {"type": "string", "enum": ["parquet", "npz"],
                                  "default": "parquet"},
                       "parquet: one row group per chunk, per-receiver columns "
                       "fixed_size_list; npz: one .npy per column (N or N x R) and "
                       "metadata.json, loadable with numpy.load"),
                _query("split", {"type": "string", "enum": list(SPLITS)},
                       "only the samples of this split (default: all)")],
            description="Parquet streams from the first row group; NPZ starts once every "
                        "column has been read (to temporary files). Memory stays bounded "
                        "whatever the dataset's size.")},
        **_signal_paths(ds_id),
        **_terrain_paths(),
        f"{API}/datasets/{{dataset_id}}/report/{{plot}}.png": {"get": _op(
            "One plot of the dataset's report as a PNG image", {
                "200": {"description": "the plot (an empty dataset gives a plot that says so)",
                        "content": {"image/png": {"schema": {
                            "type": "string", "contentMediaType": "image/png"}}}},
                "404": error_response("no such dataset (field dataset_id) or plot (field plot)"),
                "422": _422},
            tag="datasets", op_id="datasetReportPlot", params=[ds_id, {
                "name": "plot", "in": "path", "required": True,
                "description": "which plot: " + "; ".join(f"{k}: {v}" for k, v in PLOTS.items()),
                "schema": {"type": "string", "enum": list(PLOTS)}}],
            description="The HTML page GET /datasets/{dataset_id}/report (not part of this "
                        "API) shows every plot with the dataset's metadata.")},
        **_baseline_paths(ds_id),
        f"{API}/datasets/{{dataset_id}}/relief.png": {"get": _op(
            "The dataset's terrain as shaded relief (a PNG image over a lat/lon extent)", {
                "200": {"description": "the relief, north up, covering exactly the extent asked "
                                       "for (transparent beyond the terrain's grid), at most "
                                       "1000 pixels a side",
                        "headers": {"Cache-Control": {"description": "no-cache",
                                                      "schema": {"type": "string"}}},
                        "content": {"image/png": {"schema": {
                            "type": "string", "contentMediaType": "image/png"}}}},
                "404": error_response("no such dataset, or it uses no terrain, or its terrain "
                                      "is no longer registered (field dataset_id)"),
                "422": error_response("a bound is not a number of degrees, out of range, or "
                                      "the extent is empty (names it)")},
            tag="datasets", op_id="datasetRelief", params=[ds_id, *(
                _query(name, {"type": "number", "minimum": lo, "maximum": hi},
                       f"{name} edge of the image, degrees (default: the dataset's map extent, "
                       "as on the report's map)")
                for name, (lo, hi) in RELIEF_BOUNDS.items())],
            description="Shaded with light from the north-west (azimuth 315 degrees), 45 "
                        "degrees above the horizon; the dashboard draws it under its map. "
                        "Only for a dataset whose configuration names a terrain.")},
    }


def _baseline_paths(ds_id: dict) -> dict:
    """The baseline localizer's stored runs, and pictures of one."""
    from heimdall_synth.service.report.baseline_plots import BASELINE_PLOTS
    return {
        f"{API}/datasets/{{dataset_id}}/baselines": {"get": _op(
            "The dataset's baseline localizer runs, newest first (heimdall-synth baseline)", {
                "200": json_response(ref("BaselineRuns"), "the runs (at most 100)"),
                "404": _404, "422": _422},
            tag="datasets", op_id="listBaselineRuns", params=[ds_id])},
        f"{API}/datasets/{{dataset_id}}/baselines/{{run_id}}/{{plot}}.png": {"get": _op(
            "A picture of a baseline run: its error against GDOP and CRB, or its error map", {
                "200": {"description": "the picture",
                        "content": {"image/png": {"schema": {
                            "type": "string", "contentMediaType": "image/png"}}}},
                "404": error_response("no such dataset (dataset_id), run of it (run_id) or "
                                      "picture (plot)"),
                "422": _422},
            tag="datasets", op_id="baselinePlot", params=[ds_id, {
                "name": "run_id", "in": "path", "required": True,
                "description": "the run's id", "schema": {"type": "string", "format": "uuid"}}, {
                "name": "plot", "in": "path", "required": True,
                "description": "which picture: " + "; ".join(
                    f"{k}: {v}" for k, v in BASELINE_PLOTS.items()),
                "schema": {"type": "string", "enum": list(BASELINE_PLOTS)}}])},
    }


def _signal_paths(ds_id: dict) -> dict:
    """iq_raw: a sample's IQ as a file, and pictures of it."""
    from heimdall_synth.service.report.signal_plots import SIGNAL_PLOTS
    index = {"name": "sample_index", "in": "path", "required": True,
             "description": "the sample's sample_index (0 .. num_samples - 1)",
             "schema": {"type": "integer", "minimum": 0}}
    not_iq = error_response("the dataset is not iq_raw (not_iq_raw, field dataset_type)")
    missing = error_response("no such dataset (field dataset_id) or sample (field sample_index)")
    binary = {"type": "string", "contentMediaType": "application/octet-stream"}
    return {
        f"{API}/datasets/{{dataset_id}}/samples/{{sample_index}}/iq": {"get": _op(
            "An iq_raw sample's IQ: every receiver's capture, as .npy or a SigMF recording", {
                "200": {"description": "npy: a NumPy file of complex64 (receivers, IQ samples) "
                                       "in sqrt(mW), receivers in the sample's rx_id order; "
                                       "sigmf: a tar of <name>.sigmf-meta (sample rate, "
                                       "carrier, receiver and transmitter positions) and "
                                       "<name>.sigmf-data (cf32_le, receivers as channels)",
                        "headers": {name: {"description": text, "required": True,
                                           "schema": {"type": "string"}}
                                    for name, text in (
                                        ("Content-Disposition", "attachment with a file name"),
                                        ("X-Sample-Rate-Hz", "IQ samples per second"),
                                        ("X-Frequency-Hz", "the carrier"),
                                        ("X-IQ-Format", "the dataset's iq_format, in which "
                                                        "the values were stored or rounded"))},
                        "content": {"application/octet-stream": {"schema": binary},
                                    "application/x-tar": {"schema": {
                                        "type": "string",
                                        "contentMediaType": "application/x-tar"}}}},
                "404": missing, "409": not_iq, "422": _422},
            tag="datasets", op_id="sampleIQ", params=[ds_id, index, _query(
                "format", {"type": "string", "enum": ["npy", "sigmf"], "default": "npy"},
                "npy or sigmf")],
            description="The IQ is synthesized again from the job that generated the sample "
                        "(iq_storage regenerate) or read from its stored captures (postgres): "
                        "the same values either way.")},
        f"{API}/datasets/{{dataset_id}}/samples/{{sample_index}}/signal/{{plot}}.png": {
            "get": _op(
                "A picture of an iq_raw sample's signal: spectrum, spectrogram or envelope", {
                    "200": {"description": "the picture",
                            "content": {"image/png": {"schema": {
                                "type": "string", "contentMediaType": "image/png"}}}},
                    "404": error_response("no such dataset (dataset_id), sample (sample_index) "
                                          "or picture (plot)"),
                    "409": not_iq, "422": _422},
                tag="datasets", op_id="sampleSignalPlot", params=[ds_id, index, {
                    "name": "plot", "in": "path", "required": True,
                    "description": "which picture: " + ", ".join(SIGNAL_PLOTS),
                    "schema": {"type": "string", "enum": list(SIGNAL_PLOTS)}}])},
    }


def _terrain_paths() -> dict:
    name = {"name": "terrain", "in": "path", "required": True,
            "description": "the terrain's name (URL-encoded)",
            "schema": {"type": "string", "minLength": 1, "maxLength": 100}}
    missing = error_response("no terrain has this name (field: terrain)")
    bad_name = error_response("the name in the path is not a valid terrain name (field: "
                              "terrain), or an unknown query parameter")
    add = _op(
        "Register elevation files (SRTM .hgt, GeoTIFF), merged, as one terrain", {
            "201": {**json_response(ref("Terrain"), "registered"), "headers": {
                "Location": {"description": "the terrain's URL", "required": True,
                             "schema": {"type": "string"}}}},
            "400": error_response("a malformed multipart body"),
            "409": error_response("a terrain has this name (name_taken)"),
            "413": error_response("the body is larger than the server's MAX_TERRAIN_UPLOAD "
                                  "(512 MiB by default) or has too many parts "
                                  "(payload_too_large)"),
            "415": error_response("the body is not Content-Type: multipart/form-data"),
            "422": error_response("name or files is missing or invalid: a file that is not "
                                  ".hgt/.tif/.tiff, cannot be read, has voids or nodata "
                                  "cells, is not in a geographic CRS, or does not merge with "
                                  "the others (field: name, files, or an unknown field)")},
        tag="terrains", op_id="addTerrain", write=True,
        description="The files are read and merged first; nothing is stored unless every file "
                    "is good and the name is free. GeoTIFF needs the server's optional "
                    "geotiff extra (rasterio).")
    add["requestBody"] = {"required": True, "content": {"multipart/form-data": {
        "schema": ref("TerrainUpload"),
        "encoding": {"files": {"contentType": "application/octet-stream"}}}}}
    return {
        f"{API}/terrains": {
            "get": _op("List the registered terrains", {
                "200": json_response(ref("TerrainList"), "terrains, by name")},
                tag="terrains", op_id="listTerrains"),
            "post": add},
        f"{API}/terrains/{{terrain}}": {
            "get": _op("A registered terrain: bounds, spacing, size, SHA-256, sources", {
                "200": json_response(ref("Terrain"), "the terrain"), "404": missing,
                "422": bad_name},
                tag="terrains", op_id="getTerrain", params=[name]),
            "delete": _op("Delete a terrain", {
                "204": {"description": "deleted"}, "404": missing, "422": bad_name},
                tag="terrains", op_id="deleteTerrain", params=[name], write=True,
                description="Allowed even when datasets were made with it: a dataset records "
                            "the terrain's SHA-256, not a reference to it, so it stays "
                            "readable; expanding it will be refused until a terrain with that "
                            "hash is registered again.")},
    }


def build_openapi(version: str = "0.1.0") -> dict:
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "heimdall-synth",
            "version": version,
            "description": "Synthetic training data for RF transmitter localization: create "
                           "and expand datasets, follow their jobs, read their samples, register "
                           "terrains (elevation grids). Errors "
                           "are {\"error\": code, \"message\": text, \"field\": name?}.",
        },
        "tags": [{"name": "jobs"}, {"name": "datasets"}, {"name": "terrains"},
                 {"name": "meta"}],
        "paths": _paths(),
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearerAuth": {
                "type": "http", "scheme": "bearer",
                "description": "Needed on POST/PATCH/DELETE when the server runs with "
                               "HEIMDALL_SYNTH_API_TOKEN set; GETs never need it."}},
        },
    }
