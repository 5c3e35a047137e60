"""Datasets: GET /datasets, GET/PATCH/DELETE /datasets/{id}, GET /datasets/{id}/samples,
GET /datasets/{id}/validate."""

from __future__ import annotations

from flask import Blueprint, jsonify

from heimdall_synth.kernel.config import ConfigError, check_split
from heimdall_synth.kernel.defaults import SPLITS
from heimdall_synth.service.engine.request import check_field

from heimdall_synth.service.http.common import (API_PREFIX, get_db, int_arg, parse_uuid,
                                                query_args, read_json)
from heimdall_synth.service.storage import datasets
from heimdall_synth.service.http.serialize import dataset_json, sample_json

bp = Blueprint("datasets", __name__, url_prefix=API_PREFIX)

MAX_PAGE = 1000

# The page's sample indices come from the table (index scan, LIMIT/OFFSET), then only those rows
# go through the JSON view, so the view's per-receiver JSON is built for the page alone.
SAMPLES_SQL = (
    "SELECT v.*, {split_name} AS split FROM (SELECT f.sample_index, f.split FROM "
    "heimdall.measurement_features f WHERE f.dataset_id = %(id)s AND "
    "f.split = coalesce(%(split)s, f.split) ORDER BY f.sample_index LIMIT %(limit)s "
    "OFFSET %(offset)s) s JOIN heimdall.measurement_features_json v ON v.dataset_id = %(id)s "
    "AND v.sample_index = s.sample_index ORDER BY v.sample_index").format(
        split_name="(ARRAY[" + ", ".join(f"'{name}'" for name in SPLITS) + "])[s.split + 1]")
SPLIT_COUNT_SQL = ("SELECT count(*) FROM heimdall.measurement_features WHERE dataset_id = %s "
                   "AND split = %s")


@bp.get("/datasets")
def list_datasets():
    query_args(())
    rows = datasets.list_datasets(get_db())
    return jsonify({"datasets": [dataset_json(r) for r in rows], "count": len(rows)})


@bp.get("/datasets/<dataset_id>")
def get_dataset(dataset_id):
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    return jsonify(dataset_json(datasets.get_dataset(get_db(), dataset_id)))


@bp.patch("/datasets/<dataset_id>")
def rename_dataset(dataset_id):
    """Rename: {"name": "new name"} (409 when another dataset has it)."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    body = read_json()
    if not isinstance(body, dict):
        raise ConfigError(None, 'the body must be a JSON object {"name": "..."}')
    for key in body:
        if key != "name":
            raise ConfigError(str(key), "unknown field; only name can be changed")
    if "name" not in body:
        raise ConfigError("name", "is required")
    name = check_field("name", body["name"])  # the whole request is checked before the 404
    conn = get_db()
    datasets.get_dataset(conn, dataset_id, with_count=False)
    return jsonify(dataset_json(datasets.rename_dataset(conn, dataset_id, name)))


@bp.delete("/datasets/<dataset_id>")
def delete_dataset(dataset_id):
    """Delete a dataset and its samples (409 while a job on it is pending, queued or running)."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    datasets.delete_dataset(get_db(), dataset_id)
    return jsonify({"id": dataset_id, "deleted": True})


@bp.get("/datasets/<dataset_id>/samples")
def samples(dataset_id):
    """Rows of heimdall.measurement_features_json ordered by sample_index."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    args = query_args(("limit", "offset", "split"))
    limit = int_arg(args, "limit", 100, 1, MAX_PAGE)
    offset = int_arg(args, "offset", 0, 0, None)
    split = check_split(args.get("split"))
    code = None if split is None else SPLITS.index(split)
    conn = get_db()
    ds = datasets.get_dataset(conn, dataset_id, with_count=False)
    with conn.transaction():
        cur = conn.execute(SAMPLES_SQL, {"id": dataset_id, "limit": limit, "offset": offset,
                                         "split": code})
        names = [c.name for c in cur.description]
        rows = [sample_json(dict(zip(names, r))) for r in cur.fetchall()]
        total = (ds["num_samples"] if split is None else
                 conn.execute(SPLIT_COUNT_SQL, (dataset_id, code)).fetchone()[0])
    return jsonify({"dataset_id": dataset_id, "limit": limit, "offset": offset,
                    "split": split or "all", "num_samples": total, "count": len(rows),
                    "next_offset": offset + len(rows) if offset + len(rows) < total else None,
                    "samples": rows})


@bp.get("/datasets/<dataset_id>/validate")
def validate(dataset_id):
    """Metadata count against a real COUNT(*), index density and duplicates."""
    dataset_id = parse_uuid(dataset_id, "dataset_id")
    query_args(())
    return jsonify(datasets.validate_dataset(get_db(), dataset_id))
