"""Datasets and jobs in PostgreSQL: creating, reading, cancelling, resuming, recovering.

The generation loop itself is ``service.generation``; this module is the bookkeeping around it,
shared by the CLI and the HTTP service. A refused request changes nothing: every check runs
before the one transaction that inserts the dataset and the job.
"""

from __future__ import annotations

import secrets
import uuid

from psycopg.types.json import Jsonb

from heimdall_synth.kernel.config import ConfigError, check_value, plain

from heimdall_synth.service.storage.copy_rows import new_dataset_id
from heimdall_synth.service.engine.loop import lock_key
from heimdall_synth.service.engine.request import (ConflictError, GenerateRequest, NotFoundError, config_of, resolve_expansion)

RESUMABLE = ("interrupted", "cancelled", "failed")
ACTIVE = ("pending", "queued", "running")


def create_job(conn, request: GenerateRequest) -> dict:
    """Insert the job (and, for a new dataset, the dataset) for a validated request.

    Raises NotFoundError for an unknown expand_dataset_id, ConflictError when a new dataset's
    name is taken or an expansion changes data-defining fields without override.
    """
    job_id = uuid.uuid4()
    options = request.job_options()
    with conn.transaction():
        if request.is_expansion:
            row = conn.execute(
                "SELECT id, seed, config, num_samples FROM heimdall.synthetic_datasets "
                "WHERE id = %s", (request.expand_dataset_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no dataset {request.expand_dataset_id}",
                                    field="expand_dataset_id")
            dataset_id, stored_seed, stored_config, count = row
            cfg, seed, overrides = resolve_expansion(request, stored_config, stored_seed)
            kind = "expand"
        else:
            cfg = config_of(request.given)
            seed = request.given.get("seed")
            seed = secrets.randbelow(2**63) if seed is None else seed
            dataset_id, overrides, kind, count = new_dataset_id(), {}, "create", 0
            inserted = conn.execute(
                "INSERT INTO heimdall.synthetic_datasets (id, name, description, dataset_type, "
                "seed, config, created_by_job_id, storage_size_bytes) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, 0) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
                (dataset_id, request.given["name"], request.given.get("description"),
                 cfg.dataset_type, seed, Jsonb(cfg.to_dict()), job_id)).fetchone()
            if inserted is None:
                raise ConflictError(f"a dataset named {request.given['name']!r} exists; expand "
                                    "it with expand_dataset_id or choose another name",
                                    ["name"], code="name_taken")
        spec = {"config": cfg.to_dict(), "seed": seed, "options": options,
                "request": plain(request.given)}
        conn.execute(
            "INSERT INTO heimdall.generation_jobs (id, dataset_id, kind, status, config, "
            "requested, overrides, progress_message) VALUES (%s, %s, %s, 'pending', %s, %s, %s, %s)",
            (job_id, dataset_id, kind, Jsonb(spec), request.num_samples, Jsonb(overrides),
             f"{count:,} / {count + request.num_samples:,}"
             + (f" (continued from {count:,})" if count else "")))
    return {"job_id": str(job_id), "dataset_id": str(dataset_id), "kind": kind,
            "status": "pending", "overrides": overrides}


def _rows(cur) -> list[dict]:
    names = [c.name for c in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def uuid_of(value, field: str) -> str:
    """A job or dataset id in canonical form; ConfigError naming the field otherwise."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        raise ConfigError(field, f"is not a valid UUID: {value!r}") from None


def get_job(conn, job_id) -> dict:
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        rows = _rows(conn.execute("SELECT * FROM heimdall.generation_jobs WHERE id = %s",
                                  (job_id,)))
    if not rows:
        raise NotFoundError(f"no job {job_id}", field="job_id")
    return rows[0]


def list_jobs(conn, dataset_id=None, limit: int = 100) -> list[dict]:
    if dataset_id is not None:
        dataset_id = uuid_of(dataset_id, "dataset_id")
    with conn.transaction():
        if dataset_id is None:
            return _rows(conn.execute("SELECT * FROM heimdall.generation_jobs "
                                      "ORDER BY created_at DESC LIMIT %s", (limit,)))
        return _rows(conn.execute("SELECT * FROM heimdall.generation_jobs WHERE dataset_id = %s "
                                  "ORDER BY created_at DESC LIMIT %s", (str(dataset_id), limit)))


# The real count of dataset ``d``'s rows, as a scalar subquery (an index-only count per dataset).
ACTUAL_COUNT_SQL = "SELECT count(*) FROM heimdall.measurement_features f WHERE f.dataset_id = d.id"

DATASET_COLUMNS = ("id, name, description, dataset_type, seed, config, num_samples, "
                   "next_attempt_index, quality_metrics, storage_size_bytes, created_at, "
                   "updated_at, created_by_job_id")


def get_dataset(conn, dataset_id, with_count: bool = True) -> dict:
    dataset_id = uuid_of(dataset_id, "dataset_id")
    # One statement, so the metadata count and the real COUNT(*) come from one snapshot: under
    # READ COMMITTED two statements could straddle a batch's commit and show counts that differ.
    count = f", ({ACTUAL_COUNT_SQL}) AS actual_count" if with_count else ""
    with conn.transaction():
        rows = _rows(conn.execute(f"SELECT {DATASET_COLUMNS}{count} FROM "
                                  "heimdall.synthetic_datasets d WHERE id = %s",
                                  (str(dataset_id),)))
    if not rows:
        raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
    return rows[0]


def find_dataset(conn, ref: str) -> dict:
    """A dataset by id or by name."""
    try:
        return get_dataset(conn, uuid.UUID(str(ref)))
    except (ValueError, NotFoundError):
        with conn.transaction():
            row = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE name = %s",
                               (ref,)).fetchone()
        if row is None:
            raise NotFoundError(f"no dataset with id or name {ref!r}", field="dataset") from None
        return get_dataset(conn, row[0])


def list_datasets(conn, with_counts: bool = True) -> list[dict]:
    count = f", ({ACTUAL_COUNT_SQL}) AS actual_count" if with_counts else ""
    with conn.transaction():   # one statement, one snapshot (see get_dataset)
        return _rows(conn.execute(f"SELECT {DATASET_COLUMNS}{count} FROM "
                                  "heimdall.synthetic_datasets d ORDER BY created_at"))


def validate_dataset(conn, dataset_id) -> dict:
    """Metadata count against a real COUNT, index density and duplicates."""
    ds = get_dataset(conn, dataset_id, with_count=False)
    dataset_id = ds["id"]
    with conn.transaction():
        count, lo, hi, distinct = conn.execute(
            "SELECT count(*), min(sample_index), max(sample_index), count(DISTINCT sample_index) "
            "FROM heimdall.measurement_features WHERE dataset_id = %s",
            (str(dataset_id),)).fetchone()
    dense = count == 0 or (lo == 0 and hi == count - 1)
    duplicates = count - distinct
    ok = count == ds["num_samples"] and dense and duplicates == 0
    return {"dataset_id": str(dataset_id), "metadata_count": ds["num_samples"],
            "actual_count": count, "counts_agree": count == ds["num_samples"],
            "min_sample_index": lo, "max_sample_index": hi, "index_dense": dense,
            "duplicate_indices": duplicates, "next_attempt_index": ds["next_attempt_index"],
            "ok": ok}


def _locked_status(conn, job_id: str) -> str:
    """The job's status, its row locked for the current transaction; NotFoundError if none."""
    row = conn.execute("SELECT status FROM heimdall.generation_jobs WHERE id = %s FOR UPDATE",
                       (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no job {job_id}", field="job_id")
    return row[0]


def request_cancel(conn, job_id) -> dict:
    """Ask a job to stop; the loop sees it at its next commit (or before it starts)."""
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        status = _locked_status(conn, job_id)
        if status not in ACTIVE:
            raise ConflictError(f"job {job_id} is {status}; only a pending, queued or running "
                                "job can be cancelled", ["status"], code="not_active")
        conn.execute("UPDATE heimdall.generation_jobs SET cancel_requested = true WHERE id = %s",
                     (job_id,))
    return get_job(conn, job_id)


def prepare_resume(conn, job_id) -> dict:
    """Check a job can be resumed and mark it pending again (its counts stay).

    Interrupted, cancelled and failed jobs can; so can a 'pending' job that no process is
    running (its creator died before starting it): the job's advisory lock tells."""
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        status = _locked_status(conn, job_id)
        orphan = status == "pending" and conn.execute(
            f"SELECT pg_try_advisory_xact_lock({lock_key('job', '%s')})", (job_id,)).fetchone()[0]
        if status not in RESUMABLE and not orphan:
            raise ConflictError(f"job {job_id} is {status}; only an interrupted, cancelled or "
                                "failed job can be resumed", ["status"], code="not_resumable")
        conn.execute("UPDATE heimdall.generation_jobs SET status = 'pending', "
                     "cancel_requested = false, progress_message = 'resuming' WHERE id = %s",
                     (str(job_id),))
    return get_job(conn, job_id)


def mark_stopped(conn, job_id, from_status: str, status: str, message: str) -> bool:
    """Record the end of a job that a runner stopped without running it (or that it stops at
    shutdown): only when the job is still ``from_status``. Returns whether it changed."""
    with conn.transaction():
        return conn.execute(
            "UPDATE heimdall.generation_jobs SET status = %s, stopped_reason = %s, "
            "stop_message = %s, progress_message = %s, finished_at = now(), "
            "heartbeat_at = now() WHERE id = %s AND status = %s",
            (status, status, message, message, str(job_id), from_status)).rowcount == 1


#: A 'pending' job older than this whose advisory lock is free has lost its creator.
ORPHAN_AFTER_S = 60


def recover_interrupted(conn) -> list[str]:
    """Mark 'interrupted' every active job no live process holds (SPEC 9, contract C5).

    A running job's process holds a session advisory lock on the job (a service holds it for
    the jobs waiting in its pool too); when the process dies, PostgreSQL releases it. So a job
    whose lock we can take has no owner. A 'pending' job is only taken for an orphan once it is
    ORPHAN_AFTER_S old, so the moment between creating a job and starting it is never misread.
    """
    marked = []
    with conn.transaction():
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM heimdall.generation_jobs WHERE status IN ('queued', 'running') OR "
            "(status = 'pending' AND created_at < now() - make_interval(secs => %s))",
            (ORPHAN_AFTER_S,))]
    for job_id in ids:
        with conn.transaction():
            got = conn.execute(f"SELECT pg_try_advisory_xact_lock({lock_key('job', '%s')})",
                               (str(job_id),)).fetchone()[0]
            if got:
                conn.execute(
                    "UPDATE heimdall.generation_jobs SET status = 'interrupted', "
                    "stopped_reason = 'interrupted', stop_message = 'Its process ended before it "
                    "finished; resume it to reach the original target.' WHERE id = %s "
                    "AND status IN ('queued', 'running')", (job_id,))
                marked.append(str(job_id))
    return marked


def delete_dataset(conn, dataset_id) -> None:
    dataset_id = uuid_of(dataset_id, "dataset_id")
    with conn.transaction():
        ds = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE id = %s FOR UPDATE",
                          (str(dataset_id),)).fetchone()
        if ds is None:
            raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
        busy = conn.execute(
            "SELECT id FROM heimdall.generation_jobs WHERE dataset_id = %s AND status IN "
            "('pending', 'queued', 'running')", (str(dataset_id),)).fetchone()
        if busy is not None:
            raise ConflictError(f"dataset {dataset_id} has an active job {busy[0]}; cancel it "
                                "first", ["dataset_id"], code="dataset_busy")
        conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s", (str(dataset_id),))


def rename_dataset(conn, dataset_id, name: str) -> dict:
    dataset_id = uuid_of(dataset_id, "dataset_id")
    name = check_value("name", name)
    with conn.transaction():
        taken = conn.execute("SELECT id FROM heimdall.synthetic_datasets WHERE name = %s AND "
                             "id <> %s", (name, str(dataset_id))).fetchone()
        if taken:
            raise ConflictError(f"a dataset named {name!r} exists", ["name"], code="name_taken")
        row = conn.execute("UPDATE heimdall.synthetic_datasets SET name = %s, updated_at = now() "
                           "WHERE id = %s RETURNING id", (name, str(dataset_id))).fetchone()
        if row is None:
            raise NotFoundError(f"no dataset {dataset_id}", field="dataset_id")
    return get_dataset(conn, dataset_id)

