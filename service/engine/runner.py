"""The service's background job pool: a bounded ThreadPoolExecutor calling ``run_job``.

Threads, never processes: Numba's OpenMP threading layer forbids forking once a kernel has
run, and ``run_job`` releases the GIL in the kernel (nogil) and in PostgreSQL I/O anyway.

Each submitted job gets a ``threading.Event`` for cancel (the HTTP cancel also sets the row's
``cancel_requested`` through ``jobs.request_cancel``, which is what a job run by another process
sees).

Jobs on one dataset run one after another (C6), and a job waiting for another on its dataset
must not take a worker from jobs on other datasets: the runner keeps, per dataset, a line of its
jobs in submission order; only the first of each line is in the pool, the others wait, recorded
``queued`` ("waiting for job <id> on this dataset"), and each goes to the pool (``pending``
again, "waiting for a job worker") when the one before it has ended. (A job of ANOTHER process
on the same dataset is still waited for by ``run_job``, on the dataset's advisory lock, also
reported ``queued``.) Without the lines, three expansions of one dataset given to two workers
would take both, one of them only to wait, and a job on another dataset would wait behind
them.

The job row stays the single source of truth. The runner also keeps, for each job it runs,
the list of the loop's ``batch`` events of the current run (``JobEntry.batches``), so that the
event stream can report every committed batch exactly; the stream still takes status, counts
and the final record from the row.

While a job waits in the pool's queue or in a line, the runner holds the job's session
advisory lock (the one ``run_job`` takes when it starts) on a connection of its own, and lets
go just before ``run_job`` starts. So a job waiting here is never taken for an orphan by another
process (``recover_interrupted``, ``prepare_resume`` of a 'pending' job whose creator died).

The runner writes a job row itself only for a job that has not reached ``run_job`` (so no
other writer can exist): waiting in its dataset's line (-> ``queued``), cancelled while waiting
in the pool's queue or in a line (-> ``cancelled``), and left waiting when the service stops
(-> ``interrupted``, so it can be resumed). A job RUNNING when the service stops is cancelled
at its next batch and then recorded ``interrupted`` instead of ``cancelled`` (nobody asked for
the cancel).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

log = logging.getLogger("heimdall.service")

#: Batch events kept per job for the event stream (a 100M-sample job has ~2,000 batches).
BATCH_LOG = 20_000


@dataclass(eq=False)  # compared by identity (lines, lists)
class JobEntry:
    job_id: str
    line: str = ""  # its dataset's line (the dataset id; the job id when it could not be read)
    previous: "JobEntry | None" = None  # an earlier run of the same job, winding down
    cancel: threading.Event = field(default_factory=threading.Event)
    batches: deque = field(default_factory=lambda: deque(maxlen=BATCH_LOG))
    future: Future | None = None
    user_cancelled: bool = False
    started: bool = False
    held: bool = False  # the runner holds the job's advisory lock while it waits
    waiting: bool = False  # submitted behind another job of its line: recorded 'queued'
    done: threading.Event = field(default_factory=threading.Event)

    def on_event(self, event: dict) -> None:
        if event.get("type") == "batch":
            self.batches.append(event)


class JobRunner:
    """Runs jobs in ``workers`` background threads; ``threads`` kernel threads per job."""

    def __init__(self, url: str, workers: int = 2, threads: int | None = None):
        if workers < 1:
            raise ValueError("JOB_WORKERS must be at least 1")
        self.url = url
        self.threads = threads
        self.closing = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heimdall-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, JobEntry] = {}
        self._lines: dict[str, deque[JobEntry]] = {}  # the first of each line is in the pool
        self._owner_lock = threading.Lock()
        self._owner = None  # connection holding the locks of the jobs waiting in the queue

    # ---- submitting and cancelling

    def submit(self, job_id) -> JobEntry:
        """Run a job (new or resumed) in the background. A previous run of the same job still
        winding down in this process is waited for first (it holds the job's lock)."""
        job_id = str(job_id)
        dataset_id = self._dataset_of(job_id)
        with self._lock:
            if self.closing.is_set():
                raise RuntimeError("the service is stopping")
            entry = JobEntry(job_id, line=dataset_id or job_id, previous=self._jobs.get(job_id))
            entry.held = self._hold(job_id)
            self._jobs[job_id] = entry
            line = self._lines.setdefault(entry.line, deque())
            line.append(entry)
            if len(line) == 1:
                entry.future = self._pool.submit(self._run, entry)
            else:
                entry.waiting = True
                ahead = line[-2].job_id
                self._owner_sql(
                    "UPDATE heimdall.generation_jobs SET status = 'queued', progress_message = "
                    "%s, heartbeat_at = now() WHERE id = %s AND status = 'pending'",
                    ("waiting for its previous run to end" if ahead == job_id else
                     f"waiting for job {ahead} on this dataset", job_id))
        return entry

    def entry(self, job_id) -> JobEntry | None:
        with self._lock:
            return self._jobs.get(str(job_id))

    def cancel(self, job_id) -> None:
        """Ask the job to stop (it stops after its current batch). A job still waiting in the
        pool's queue, or behind another job of its dataset, is taken out and recorded cancelled
        at once."""
        entry = self.entry(job_id)
        if entry is None:
            return  # not ours: the row's cancel_requested reaches whoever runs it
        entry.user_cancelled = True
        entry.cancel.set()
        with self._lock:
            waiting = self._leave_line(entry)  # behind another job of its dataset: never starts
        if waiting or (entry.future is not None and entry.future.cancel()):
            self._end_unstarted(entry, "cancelled",
                                "Cancelled before it started; nothing (more) was generated.")

    # ---- the worker

    def _run(self, entry: JobEntry) -> None:
        try:
            if entry.previous is not None:
                entry.previous.done.wait()
            if entry.cancel.is_set():
                if self.closing.is_set() and not entry.user_cancelled:
                    self._end_unstarted(entry, "interrupted", _STOPPED_BEFORE)
                else:
                    self._end_unstarted(entry, "cancelled",
                                        "Cancelled before it started; nothing (more) was "
                                        "generated.")
                return
            entry.started = True
            self._release(entry)
            from heimdall_synth.service.engine.loop import JobError, run_job
            try:
                result = run_job(self.url, entry.job_id, threads=self.threads,
                                 cancel=entry.cancel, on_event=entry.on_event)
            except JobError as exc:
                log.error("Job %s failed: %s", entry.job_id, exc)
                return
            log.info("Job %s ended %s (%s): %s", entry.job_id, result.status,
                     result.stopped_reason, result.message)
            if (result.status == "cancelled" and self.closing.is_set()
                    and not entry.user_cancelled):
                self._mark(entry.job_id, "cancelled", "interrupted", _STOPPED_WHILE_RUNNING)
        except Exception:  # noqa: BLE001 - a worker must never die silently
            log.exception("Job %s: unexpected error in the service's job runner", entry.job_id)
        finally:
            self._release(entry)
            entry.done.set()
            self._forget(entry)

    def _end_unstarted(self, entry: JobEntry, status: str, message: str) -> None:
        if not self._mark(entry.job_id, "queued", status, message):
            self._mark(entry.job_id, "pending", status, message)
        self._release(entry)
        entry.done.set()
        self._forget(entry)

    def _forget(self, entry: JobEntry) -> None:
        """The job has ended: drop it, and give the next job of its dataset to the pool."""
        with self._lock:
            if self._jobs.get(entry.job_id) is entry:
                del self._jobs[entry.job_id]
            line = self._lines.get(entry.line)
            if line is None:
                return
            if entry in line:
                line.remove(entry)
            if not line:
                del self._lines[entry.line]
            elif line[0].future is None and not self.closing.is_set():
                self._owner_sql(  # before run_job can start: it may set 'queued' itself
                    "UPDATE heimdall.generation_jobs SET status = 'pending', progress_message = "
                    "'waiting for a job worker', heartbeat_at = now() WHERE id = %s AND "
                    "status = 'queued'", (line[0].job_id,))
                line[0].future = self._pool.submit(self._run, line[0])

    def _leave_line(self, entry: JobEntry) -> bool:
        """Under self._lock: take a job that waits behind another of its dataset (not yet in
        the pool) out of its line; False when it is not waiting there."""
        line = self._lines.get(entry.line)
        if entry.future is not None or line is None or entry not in line:
            return False
        line.remove(entry)
        return True

    # ---- the queue's advisory locks

    def _owner_sql(self, sql: str, params: tuple):
        """``sql`` on the runner's own connection: the first row, or None when it failed (the
        queue's locks, its 'queued' marks and the dataset look-up only help; ``run_job`` and
        the job row stay the source of truth)."""
        from heimdall_synth.service.storage.database import connect
        with self._owner_lock:
            try:
                if self._owner is None or self._owner.closed or self._owner.broken:
                    self._owner = connect(self.url, autocommit=True)
                cur = self._owner.execute(sql, params)
                return cur.fetchone() if cur.description else ()
            except Exception as exc:  # noqa: BLE001
                log.warning("job runner: %s failed: %s", sql.split("(")[0], exc)
                return None

    def _dataset_of(self, job_id: str) -> str | None:
        row = self._owner_sql("SELECT dataset_id FROM heimdall.generation_jobs WHERE id = %s",
                              (job_id,))
        return str(row[0]) if row and row[0] is not None else None

    def _hold(self, job_id: str) -> bool:
        from heimdall_synth.service.engine.loop import lock_key
        row = self._owner_sql(f"SELECT pg_try_advisory_lock({lock_key('job', '%s')})",
                              (job_id,))
        return bool(row and row[0])

    def _release(self, entry: JobEntry) -> None:
        from heimdall_synth.service.engine.loop import lock_key
        if entry.held:
            entry.held = False
            self._owner_sql(f"SELECT pg_advisory_unlock({lock_key('job', '%s')})",
                            (entry.job_id,))

    def _mark(self, job_id: str, from_status: str, status: str, message: str) -> bool:
        """Record the end of a job this runner stopped (see the module docstring), if it is
        still ``from_status``; whether it was."""
        from heimdall_synth.service.storage import jobs
        from heimdall_synth.service.storage.database import connect
        try:
            with connect(self.url) as conn:
                return jobs.mark_stopped(conn, job_id, from_status, status, message)
        except Exception:  # noqa: BLE001
            log.exception("could not record job %s as %s", job_id, status)
            return False

    # ---- stopping

    def active(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def close(self, timeout: float = 10.0) -> None:
        """Stop: running jobs end at their next batch (recorded ``interrupted``), queued ones
        are recorded ``interrupted`` without starting. Waits up to ``timeout`` seconds."""
        with self._lock:
            self.closing.set()
            entries = list(self._jobs.values())
            waiting = [e for e in entries if self._leave_line(e)]
        for entry in entries:
            entry.cancel.set()
        for entry in entries:
            if entry in waiting or (entry.future is not None and entry.future.cancel()):
                self._end_unstarted(entry, "interrupted", _STOPPED_BEFORE)
        futures = [e.future for e in entries if e.future is not None]
        wait(futures, timeout=timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._owner_lock:
            if self._owner is not None:
                self._owner.close()  # lets go of any lock still held
                self._owner = None


_STOPPED_BEFORE = ("The service stopped before this job started; resume it to reach the "
                   "original target.")
_STOPPED_WHILE_RUNNING = ("The service stopped while this job ran; its committed batches are "
                          "kept: resume it to reach the original target.")
