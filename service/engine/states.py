"""The job state machine: every change of a job's status goes through ``transition``.

    pending --> queued --> pending          (a runner's line; the loop waiting for its dataset)
    pending/queued --> running              (the loop starts; only one process can win this)
    running --> completed | failed | cancelled | interrupted
    pending/queued --> cancelled | interrupted      (stopped before it ran)
    failed | cancelled | interrupted --> pending    (resume)
    interrupted --> cancelled                       (an abandoned job given up)

``transition`` is ONE guarded UPDATE (``WHERE status = ANY(allowed sources)``): a change that
the table does not allow, or that lost a race with another writer, changes nothing and returns
None. The state machine also owns the timestamps: a run's start, its running time (added to
``run_seconds`` when it leaves 'running', so a resumed job's duration leaves out the time it was
stopped), ``finished_at`` of an end, and the heartbeat.
"""

from __future__ import annotations

from psycopg import sql

ACTIVE = ("pending", "queued", "running")
TERMINAL = ("completed", "failed", "cancelled", "interrupted")
RESUMABLE = ("failed", "cancelled", "interrupted")
STATUSES = ACTIVE + TERMINAL

#: status -> the statuses it may be entered from.
ENTERED_FROM = {
    "pending": ("queued", *RESUMABLE),
    "queued": ("pending",),
    "running": ("pending", "queued"),
    "completed": ("running",),
    "failed": ("running",),
    "cancelled": ("pending", "queued", "running", "interrupted"),
    "interrupted": ACTIVE,
}

#: Columns a transition may set besides the status (the rest is the state machine's own).
SETTABLE = frozenset({
    "progress_message", "stopped_reason", "stop_message", "error", "samples_offset", "device",
    "cancel_requested"})

QUEUED_BEHIND = "waiting for job {job} on this dataset"
QUEUED_UNKNOWN = "waiting for another job on this dataset"
WAITING_FOR_WORKER = "waiting for a job worker"


def queued_message(ahead) -> str:
    """The one message of a 'queued' job: which job it waits for, when known."""
    return QUEUED_BEHIND.format(job=ahead) if ahead else QUEUED_UNKNOWN


def transition(conn, job_id, to: str, *, expect=None, end_at_heartbeat: bool = False,
               **columns) -> dict | None:
    """Move job ``job_id`` to status ``to`` if its status allows it (``expect``, when given,
    narrows the allowed sources) and set ``columns``; returns the row's new (status,
    samples_offset, generated, requested) as a dict, or None when nothing changed.

    Runs in the caller's transaction when one is open (a savepoint otherwise not needed: it is
    one statement). ``end_at_heartbeat``: a run found dead ended at its last heartbeat, not now.
    """
    if to not in ENTERED_FROM:
        raise ValueError(f"unknown job status {to!r}")
    sources = ENTERED_FROM[to]
    if expect is not None:
        expect = (expect,) if isinstance(expect, str) else tuple(expect)
        unknown = set(expect) - set(STATUSES)
        if unknown:
            raise ValueError(f"unknown job status {sorted(unknown)}")
        sources = tuple(s for s in sources if s in expect)
    bad = set(columns) - SETTABLE
    if bad:
        raise ValueError(f"a transition does not set {sorted(bad)}")
    end = "coalesce(heartbeat_at, now())" if end_at_heartbeat else "now()"
    assignments = [sql.SQL("status = {}").format(sql.Literal(to))]
    if to == "running":
        assignments.append(sql.SQL("started_at = coalesce(started_at, now()), "
                                   "run_started_at = now(), finished_at = NULL"))
    else:
        assignments.append(sql.SQL(
            "run_seconds = run_seconds + CASE WHEN status = 'running' AND run_started_at IS NOT "
            "NULL THEN greatest(0, extract(epoch FROM " + end + " - run_started_at)) ELSE 0 END, "
            "run_started_at = NULL"))
        assignments.append(sql.SQL("finished_at = now()") if to in TERMINAL
                           else sql.SQL("finished_at = NULL"))
    if not end_at_heartbeat:
        assignments.append(sql.SQL("heartbeat_at = now()"))
    params = []
    for name, value in columns.items():
        assignments.append(sql.SQL("{} = %s").format(sql.Identifier(name)))
        params.append(value)
    statement = sql.SQL(
        "UPDATE heimdall.generation_jobs SET {} WHERE id = %s AND status = ANY(%s) "
        "RETURNING status, samples_offset, generated, requested").format(
        sql.SQL(", ").join(assignments))
    row = conn.execute(statement, [*params, str(job_id), list(sources)]).fetchone()
    if row is None:
        return None
    return dict(zip(("status", "samples_offset", "generated", "requested"), row))
