"""Jobs: POST /generate, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel, POST
/jobs/{id}/resume, GET /jobs/{id}/events."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from heimdall_synth.service.engine.request import GenerateRequest, NotFoundError

from heimdall_synth.service.http.common import (API_PREFIX, get_db, int_arg, no_body, parse_uuid,
                                                query_args, read_json, state)
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.http.serialize import job_json

bp = Blueprint("jobs", __name__, url_prefix=API_PREFIX)

# A job row with its dataset's committed count, in one statement (GET /jobs/{id} and the
# event streams' reader both use it, so they cannot drift apart).
JOB_WITH_COUNT = ("SELECT j.*, d.num_samples AS dataset_num_samples FROM heimdall.generation_jobs "
                  "j LEFT JOIN heimdall.synthetic_datasets d ON d.id = j.dataset_id")
JOB_SNAPSHOT = JOB_WITH_COUNT + " WHERE j.id = %s"


def load_job(conn, job_id: str) -> dict:
    """The job as JSON, read in ONE statement with its dataset's committed count."""
    with conn.transaction():
        cur = conn.execute(JOB_SNAPSHOT, (job_id,))
        row = cur.fetchone()
        if row is None:
            raise NotFoundError(f"no job {job_id}", field="job_id")
        row = dict(zip([c.name for c in cur.description], row))
    return job_json(row, row.pop("dataset_num_samples"))


def _accepted(job_id: str, dataset_id: str, status: str, **extra) -> Response:
    status_url = f"{API_PREFIX}/jobs/{job_id}"
    response = jsonify({"job_id": job_id, "dataset_id": dataset_id, "status": status,
                        "status_url": status_url, "events_url": f"{status_url}/events", **extra})
    response.status_code = 202
    response.headers["Location"] = status_url
    return response


@bp.post("/generate")
def generate():
    """Create a dataset or expand one; the job runs in the background (202)."""
    query_args(())
    body = read_json()
    req = GenerateRequest.from_dict(body)
    created, entry = state().runner.create(get_db(), req)
    extra = {}
    ignored = [k for k in ("name", "description") if req.is_expansion and k in req.given]
    if ignored:
        # Validated and kept with the job's request, but an expansion never renames or
        # re-describes its dataset (docs/API.md); say so instead of ignoring them silently.
        extra["notices"] = [
            f"{' and '.join(ignored)} of an expansion describe this request only (kept in the "
            "job's config.request); the dataset keeps its own; rename it with PATCH "
            f"{API_PREFIX}/datasets/{created['dataset_id']}"]
    return _accepted(created["job_id"], created["dataset_id"], _submitted(entry, created),
                     kind=created["kind"], overrides=created["overrides"], **extra)


@bp.get("/jobs")
def list_jobs():
    args = query_args(("dataset_id", "limit"))
    limit = int_arg(args, "limit", 100, 1, 1000)
    dataset_id = parse_uuid(args["dataset_id"], "dataset_id") if "dataset_id" in args else None
    conn = get_db()
    if dataset_id is not None:
        datasets.get_dataset(conn, dataset_id, with_count=False)  # 404 for an unknown dataset
    rows = jobs.list_jobs(conn, dataset_id, limit)
    with conn.transaction():
        counts = dict(conn.execute(
            "SELECT id, num_samples FROM heimdall.synthetic_datasets WHERE id = ANY(%s)",
            ([r["dataset_id"] for r in rows],)).fetchall())
    return jsonify({"jobs": [job_json(r, counts.get(r["dataset_id"])) for r in rows],
                    "count": len(rows), "limit": limit})


@bp.get("/jobs/<job_id>")
def get_job(job_id):
    query_args(())
    return jsonify(load_job(get_db(), parse_uuid(job_id, "job_id")))


@bp.post("/jobs/<job_id>/cancel")
def cancel_job(job_id):
    """Ask a pending, queued or running job to stop (it stops after its current batch)."""
    job_id = parse_uuid(job_id, "job_id")
    query_args(())
    no_body()
    conn = get_db()
    jobs.request_cancel(conn, job_id)   # 404 / 409 not_active; sets cancel_requested
    state().runner.cancel(job_id)          # and the in-process event, when it runs here
    response = jsonify(load_job(conn, job_id))
    response.status_code = 202
    return response


@bp.post("/jobs/<job_id>/resume")
def resume_job(job_id):
    """Continue an interrupted, cancelled or failed job to its original target (202)."""
    job_id = parse_uuid(job_id, "job_id")
    query_args(())
    no_body()
    job, entry = state().runner.resume(get_db(), job_id)  # 404 / 409 not_resumable
    return _accepted(job_id, str(job["dataset_id"]), _submitted(entry, job), kind=job["kind"],
                     overrides=job.get("overrides") or {})


def _submitted(entry, job: dict) -> str:
    """The job's status as submission left it: 'queued' when the runner placed it behind
    another job of its dataset (and wrote so on the row), else the status it was created or
    prepared with; the reply never says less than the row."""
    return "queued" if entry.waiting else job["status"]


@bp.get("/jobs/<job_id>/events")
def job_events(job_id):
    """Server-sent events: status, progress (at least once a second while the job is active),
    one batch event per committed batch, then the final record; the stream then ends."""
    job_id = parse_uuid(job_id, "job_id")
    query_args(())
    load_job(get_db(), job_id)  # 404 before the stream starts
    from heimdall_synth.service.http.events import event_stream
    response = Response(event_stream(state(), job_id), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    return response
