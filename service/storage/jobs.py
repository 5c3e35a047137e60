"""The jobs table: creating jobs, reading them, cancel and resume requests, recovery.

Status changes go through the job state machine (``engine.states.transition``); ownership is
told by the job's owner lock (``storage.locks``), probed, never taken, here. A refused request
changes nothing: every check runs inside the one transaction that would write.
"""

from __future__ import annotations

import secrets
import uuid

from psycopg.types.json import Jsonb

from heimdall_synth.kernel.config import ConfigError, plain
from heimdall_synth.kernel.defaults import MODEL_VERSION
from heimdall_synth.service.engine.request import (ConflictError, GenerateRequest, NotFoundError,
                                                   config_of, resolve_expansion)
from heimdall_synth.service.engine.states import ACTIVE, RESUMABLE, transition
from heimdall_synth.service.storage import locks
from heimdall_synth.service.storage.datasets import insert_dataset, rows_of
from heimdall_synth.service.storage.ids import uuid_of

INTERRUPTED_MESSAGE = ("Its process ended before it finished; resume it to reach the original "
                       "target.")


def create_job(conn, request: GenerateRequest, job_id=None) -> dict:
    """Insert the job (and, for a new dataset, the dataset) for a validated request, in one
    transaction. ``job_id``: the id to use (a runner takes the job's owner lock under it before
    the row exists, so the job is never seen unowned); a new one otherwise.

    Raises NotFoundError for an unknown expand_dataset_id, ConflictError when a new dataset's
    name is taken or an expansion changes data-defining fields without override.
    """
    job_id = uuid.UUID(str(job_id)) if job_id is not None else uuid.uuid4()
    options = request.job_options()
    with conn.transaction():
        if request.is_expansion:
            row = conn.execute(
                "SELECT id, seed, config, num_samples, model_version, terrain_sha256 FROM "
                "heimdall.synthetic_datasets WHERE id = %s",
                (request.expand_dataset_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no dataset {request.expand_dataset_id}",
                                    field="expand_dataset_id")
            dataset_id, stored_seed, stored_config, count, version, stored_sha = row
            cfg, seed, overrides = resolve_expansion(request, stored_config, stored_seed)
            overrides.update(version_and_terrain_overrides(conn, request, cfg, version,
                                                           stored_sha))
            terrain_sha = terrain_hash(conn, cfg)
            kind = "expand"
        else:
            cfg = config_of(request.given)
            seed = request.given.get("seed")
            seed = secrets.randbelow(2**63) if seed is None else seed
            overrides, kind, count = {}, "create", 0
            terrain_sha = terrain_hash(conn, cfg)
            dataset_id = insert_dataset(conn, name=request.given["name"],
                                        description=request.given.get("description"),
                                        dataset_type=cfg.dataset_type, seed=seed,
                                        config=cfg.to_dict(), job_id=job_id,
                                        model_version=MODEL_VERSION, terrain_sha256=terrain_sha)
        spec = {"config": cfg.to_dict(), "seed": seed, "options": options,
                "request": plain(request.given), "model_version": MODEL_VERSION,
                "terrain_sha256": terrain_sha}
        conn.execute(
            "INSERT INTO heimdall.generation_jobs (id, dataset_id, kind, status, config, "
            "requested, overrides, progress_message) "
            "VALUES (%s, %s, %s, 'pending', %s, %s, %s, %s)",
            (job_id, dataset_id, kind, Jsonb(spec), request.num_samples, Jsonb(overrides),
             f"{count:,} / {count + request.num_samples:,}"
             + (f" (continued from {count:,})" if count else "")))
    return {"job_id": str(job_id), "dataset_id": str(dataset_id), "kind": kind,
            "status": "pending", "overrides": overrides}


def terrain_hash(conn, cfg) -> str | None:
    """The SHA-256 of the terrain the configuration names (None without one); an unregistered
    name is refused naming the field."""
    if cfg.terrain is None:
        return None
    row = conn.execute("SELECT sha256 FROM heimdall.terrains WHERE name = %s",
                       (cfg.terrain,)).fetchone()
    if row is None:
        raise ConfigError("terrain", f"no terrain named {cfg.terrain!r} is registered (add it "
                                     "with: heimdall-synth terrain add NAME FILE...)")
    return row[0]


def version_and_terrain_overrides(conn, request, cfg, version: int, stored_sha) -> dict:
    """An expansion runs this code's model version on the dataset's terrain. Another model
    version, or a terrain whose grid differs from the one the dataset recorded, is refused
    naming it (ConflictError) unless allow_parameter_override; then it is recorded. A terrain
    that is no longer registered is always refused: there is nothing to run on."""
    overrides, differ = {}, []
    if version != MODEL_VERSION:
        overrides["model_version"] = {"dataset": version, "job": MODEL_VERSION}
        differ.append("model_version")
    if cfg.terrain is not None:
        row = conn.execute("SELECT sha256 FROM heimdall.terrains WHERE name = %s",
                           (cfg.terrain,)).fetchone()
        if row is None:
            raise ConflictError(f"the dataset's terrain {cfg.terrain!r} is no longer "
                                "registered: register the same grid again to expand it",
                                ["terrain"], code="terrain_missing")
        if row[0] != stored_sha:
            overrides["terrain_sha256"] = {"dataset": stored_sha, "job": row[0]}
            differ.append("terrain")
    if differ and not request.get("allow_parameter_override"):
        what = {"model_version": f"the dataset was generated by model version {version} and "
                                 f"this code generates version {MODEL_VERSION}",
                "terrain": f"terrain {cfg.terrain!r} is not the grid the dataset was made "
                           "with (its SHA-256 differs)"}
        raise ConflictError("an expansion cannot change what the dataset means: "
                            + "; ".join(what[k] for k in differ)
                            + " (send allow_parameter_override: true to record the change on "
                              "this job anyway)", differ, code="conflicting_override")
    return overrides


def get_job(conn, job_id) -> dict:
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        rows = rows_of(conn.execute("SELECT * FROM heimdall.generation_jobs WHERE id = %s",
                                    (job_id,)))
    if not rows:
        raise NotFoundError(f"no job {job_id}", field="job_id")
    return rows[0]


def list_jobs(conn, dataset_id=None, limit: int = 100) -> list[dict]:
    if dataset_id is not None:
        dataset_id = uuid_of(dataset_id, "dataset_id")
    with conn.transaction():
        if dataset_id is None:
            return rows_of(conn.execute("SELECT * FROM heimdall.generation_jobs "
                                        "ORDER BY created_at DESC LIMIT %s", (limit,)))
        return rows_of(conn.execute("SELECT * FROM heimdall.generation_jobs WHERE dataset_id = "
                                    "%s ORDER BY created_at DESC LIMIT %s",
                                    (str(dataset_id), limit)))


def owned(conn, job_id, exclude_pid: int | None = None) -> bool:
    """Whether a live process owns the job (holds its owner lock); probed, nothing taken."""
    return locks.held(conn, locks.job_key(job_id), exclude_pid=exclude_pid)


def _locked_status(conn, job_id: str) -> str:
    """The job's status, its row locked for the current transaction; NotFoundError if none."""
    row = conn.execute("SELECT status FROM heimdall.generation_jobs WHERE id = %s FOR UPDATE",
                       (job_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"no job {job_id}", field="job_id")
    return row[0]


def request_cancel(conn, job_id) -> dict:
    """Ask a job to stop, or stop it at once when nobody runs it.

    A job its process still owns gets ``cancel_requested``; its loop reads the flag in the same
    UPDATE that commits each batch and rolls that batch back, so once this returns no further
    batch of the job commits (a batch committing right now holds the job's row lock, and this
    waits for it). The job's row has ``cancel_recorded_at_count``: the dataset's committed count
    when the cancel was recorded. An active job nobody owns, or an interrupted one, is recorded
    cancelled here.
    """
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        status = _locked_status(conn, job_id)
        if status == "interrupted" or (status in ACTIVE and not owned(conn, job_id)):
            transition(conn, job_id, "cancelled", stopped_reason="cancelled",
                       stop_message=_cancelled_unowned(status),
                       progress_message=_cancelled_unowned(status))
        elif status in ACTIVE:
            conn.execute("UPDATE heimdall.generation_jobs SET cancel_requested = true "
                         "WHERE id = %s", (job_id,))
        else:
            raise ConflictError(f"job {job_id} is {status}; only a pending, queued, running or "
                                "interrupted job can be cancelled", ["status"], code="not_active")
        count = conn.execute(
            "SELECT d.num_samples FROM heimdall.generation_jobs j JOIN "
            "heimdall.synthetic_datasets d ON d.id = j.dataset_id WHERE j.id = %s",
            (job_id,)).fetchone()
    job = get_job(conn, job_id)
    job["cancel_recorded_at_count"] = count[0] if count else None
    return job


def _cancelled_unowned(status: str) -> str:
    if status == "interrupted":
        return "Cancelled after its process had ended; its committed samples are kept."
    return "Cancelled; no process was running it any more. Its committed samples are kept."


def prepare_resume(conn, job_id, owner_pid: int | None = None) -> dict:
    """Check a job can be resumed and mark it pending again (its counts stay).

    Failed, cancelled and interrupted jobs can; an active job whose process is gone (no owner
    lock held, apart from ``owner_pid``: the caller's own lock connection) counts as
    interrupted first."""
    job_id = uuid_of(job_id, "job_id")
    with conn.transaction():
        status = _locked_status(conn, job_id)
        if status in ACTIVE and not owned(conn, job_id, exclude_pid=owner_pid):
            transition(conn, job_id, "interrupted", end_at_heartbeat=True,
                       stopped_reason="interrupted", stop_message=INTERRUPTED_MESSAGE)
            status = "interrupted"
        if status not in RESUMABLE:
            raise ConflictError(f"job {job_id} is {status}; only an interrupted, cancelled or "
                                "failed job can be resumed", ["status"], code="not_resumable")
        transition(conn, job_id, "pending", cancel_requested=False,
                   progress_message="resuming")
    return get_job(conn, job_id)


def recover_interrupted(conn) -> list[str]:
    """Mark 'interrupted' every active job whose process is gone (contract C5).

    Every process responsible for a job holds its owner lock from before the job's row exists
    (the runner) and while it runs (the loop); PostgreSQL drops the lock with the process. So an
    active job with no owner lock held has lost its process, whatever its status: pending,
    queued or running. Its running time ends at its last heartbeat.
    """
    marked = []
    with conn.transaction():
        ids = [str(r[0]) for r in conn.execute(
            "SELECT id FROM heimdall.generation_jobs WHERE status = ANY(%s)", (list(ACTIVE),))]
    for job_id in ids:
        with conn.transaction():
            row = conn.execute("SELECT status FROM heimdall.generation_jobs WHERE id = %s "
                               "FOR UPDATE", (job_id,)).fetchone()  # gone: its dataset deleted
            if row is not None and row[0] in ACTIVE and not owned(conn, job_id):
                if transition(conn, job_id, "interrupted", end_at_heartbeat=True,
                              stopped_reason="interrupted", stop_message=INTERRUPTED_MESSAGE,
                              progress_message=INTERRUPTED_MESSAGE):
                    marked.append(job_id)
    return marked
