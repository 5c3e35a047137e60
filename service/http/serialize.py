"""Rows as JSON: datetimes ISO 8601 (UTC), UUIDs as strings, non-finite floats as null.

JSON has no +inf or NaN; a GDOP or Cramer-Rao bound of +infinity (a degenerate geometry) is
sent as ``null``. PostgreSQL's jsonb spells a non-finite float as the strings "Infinity",
"-Infinity" and "NaN"; inside the per-receiver objects of the samples view those become
``null`` too.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Mapping

from flask.json.provider import JSONProvider

from heimdall_synth.service.engine.stops import progress_text

_NON_FINITE_TEXT = frozenset({"Infinity", "-Infinity", "NaN"})
API = "/api/training/synthetic"


def jsonable(value: Any) -> Any:
    """``value`` made of plain JSON types only (see the module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc)
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return jsonable(float(value)) if value != value.to_integral_value() else int(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return jsonable(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps(value: Any, **kw) -> str:
    return json.dumps(jsonable(value), allow_nan=False, **kw)


class JSONProviderStrict(JSONProvider):
    """Flask's JSON provider for this app: every response goes through ``jsonable``."""

    def dumps(self, obj: Any, **kw) -> str:
        return dumps(obj, **kw)

    def loads(self, s: str | bytes, **kw) -> Any:
        return json.loads(s, **kw)


def _duration(row: Mapping) -> float | None:
    """Running time over all the job's runs (the time it was stopped left out), the current
    run's so far included; None before it first ran."""
    if row.get("started_at") is None:
        return None
    seconds = float(row.get("run_seconds") or 0.0)
    run_started = row.get("run_started_at")
    if row.get("status") == "running" and run_started is not None:
        seconds += max((datetime.now(timezone.utc) - run_started).total_seconds(), 0.0)
    return seconds


def job_json(row: Mapping, dataset_samples: int | None = None) -> dict:
    """A job row as the API shows it, with cumulative progress.

    ``dataset_samples`` (the dataset's committed count now) stands in for ``samples_offset``
    while the job has not started (the offset is fixed when it starts).
    """
    job_id = str(row["id"])
    offset = row.get("samples_offset")
    base = offset if offset is not None else (dataset_samples or 0)
    requested, generated, attempted = (int(row["requested"]), int(row["generated"]),
                                       int(row["attempted"]))
    duration = _duration(row)
    return {
        "id": job_id,
        "dataset_id": str(row["dataset_id"]) if row.get("dataset_id") else None,
        "kind": row.get("kind"),
        "status": row["status"],
        "progress": progress_text(base, generated, requested),
        "progress_message": row.get("progress_message"),
        "requested": requested,
        "generated": generated,
        "attempted": attempted,
        "success_rate": generated / attempted if attempted else None,
        "rejections": dict(row.get("rejections") or {}),
        "samples_offset": offset,
        "target_count": base + requested,
        "committed_count": base + generated,
        "dataset_num_samples": dataset_samples,
        "stopped_reason": row.get("stopped_reason"),
        "stop_message": row.get("stop_message"),
        "error": row.get("error"),
        "cancel_requested": bool(row.get("cancel_requested")),
        "consecutive_rejections": row.get("consecutive_rejections"),
        "device": row.get("device"),
        "overrides": row.get("overrides") or {},
        "config": row.get("config") or {},
        "created_at": row.get("created_at"),
        "started_at": row.get("started_at"),
        "finished_at": row.get("finished_at"),
        "heartbeat_at": row.get("heartbeat_at"),
        "duration_s": duration,
        "samples_per_second": generated / duration if duration else None,
        "status_url": f"{API}/jobs/{job_id}",
        "events_url": f"{API}/jobs/{job_id}/events",
    }


def dataset_json(row: Mapping) -> dict:
    """A dataset row with both counts: ``num_samples`` (metadata) and ``actual_count`` (a real
    COUNT(*) of its rows)."""
    dataset_id = str(row["id"])
    out = {k: row.get(k) for k in (
        "name", "description", "dataset_type", "seed", "num_samples", "next_attempt_index",
        "quality_metrics", "storage_size_bytes", "created_at", "updated_at", "config",
        "model_version", "terrain_sha256")}
    actual = row.get("actual_count")
    out = {"id": dataset_id, **out,
           "metadata_count": row.get("num_samples"),
           "actual_count": actual,
           "counts_agree": None if actual is None else actual == row.get("num_samples"),
           "created_by_job_id": str(row["created_by_job_id"]) if row.get("created_by_job_id")
           else None,
           "devices": list(row.get("devices") or ()),
           "url": f"{API}/datasets/{dataset_id}",
           "samples_url": f"{API}/datasets/{dataset_id}/samples",
           "jobs_url": f"{API}/jobs?dataset_id={dataset_id}"}
    return out


def sample_json(row: Mapping) -> dict:
    out = dict(row)
    features = out.get("receiver_features") or []
    out["receiver_features"] = [
        {k: (None if isinstance(v, str) and v in _NON_FINITE_TEXT else v) for k, v in rx.items()}
        for rx in features]
    return out
