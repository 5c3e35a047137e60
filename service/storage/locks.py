"""PostgreSQL advisory locks: who owns a job, who writes a dataset.

Two kinds of session lock, each keyed by a 64-bit number computed here and always passed to
PostgreSQL as a parameter:

* a job's OWNER lock, taken in SHARED mode by every process responsible for the job: the runner
  that created or resumed it (from before its row exists until it ends) and the generation loop
  running it. Shared, so that the runner and the loop can both hold it and ownership never has
  a gap. When every owner's process (or connection) is gone, PostgreSQL drops the lock: a job
  still active with no owner lock held has lost its process and is recovered as interrupted.
* a dataset's WRITER lock, EXCLUSIVE, held by the loop of the one job writing the dataset
  (contract C6: the next job waits, 'queued'). Every batch checks, in its own transaction, that
  its loop still holds it (``held``): a lost lock connection stops the job before it writes.

Ownership is PROBED by reading ``pg_locks`` (``held``), never by trying to take the lock: taking
it, even for an instant, could make the owner's own attempt fail.
"""

from __future__ import annotations

import hashlib

_MASK64 = (1 << 64) - 1


def lock_key(kind: str, ident) -> int:
    """The signed 64-bit key of ``kind`` ('job' or 'dataset') ``ident`` (a UUID)."""
    digest = hashlib.blake2b(f"heimdall-synth:{kind}:{ident}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def job_key(job_id) -> int:
    return lock_key("job", str(job_id))


def dataset_key(dataset_id) -> int:
    return lock_key("dataset", str(dataset_id))


def hold_shared(conn, key: int) -> None:
    """Take the shared lock ``key`` on ``conn``'s session (never waits: shared locks only wait
    for an exclusive holder, and owner locks are only ever taken shared)."""
    conn.execute("SELECT pg_advisory_lock_shared(%s)", (key,))


def release_shared(conn, key: int) -> None:
    conn.execute("SELECT pg_advisory_unlock_shared(%s)", (key,))


def try_exclusive(conn, key: int) -> bool:
    """Take the exclusive lock ``key`` on ``conn``'s session if it is free; whether it was."""
    return bool(conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])


# pg_locks shows a bigint advisory key as classid (high 32 bits), objid (low 32 bits) and
# objsubid 1, in the current database.
_HELD_SQL = ("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
             "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
             "AND classid = %s::bigint::oid AND objid = %s::bigint::oid AND objsubid = 1")


def held(conn, key: int, *, pid: int | None = None, exclude_pid: int | None = None,
         exclusive: bool | None = None) -> bool:
    """Whether some session holds lock ``key``; with ``pid`` whether THAT backend holds it,
    with ``exclude_pid`` whether another than that one does; ``exclusive`` True/False restricts
    to that mode. Reads pg_locks: takes nothing."""
    unsigned = key & _MASK64
    sql, params = _HELD_SQL, [unsigned >> 32, unsigned & 0xFFFFFFFF]
    if pid is not None:
        sql, params = sql + " AND pid = %s", params + [pid]
    if exclude_pid is not None:
        sql, params = sql + " AND pid <> %s", params + [exclude_pid]
    if exclusive is not None:
        sql += " AND mode = 'ExclusiveLock'" if exclusive else " AND mode = 'ShareLock'"
    return bool(conn.execute(sql + ")", params).fetchone()[0])
