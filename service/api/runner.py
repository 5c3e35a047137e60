"""The service's background job pool: a bounded ThreadPoolExecutor calling ``run_job``.

Threads, never processes: Numba's OpenMP threading layer forbids forking once a kernel has
run, and ``run_job`` releases the GIL in the kernel (nogil) and in PostgreSQL I/O anyway.

Each submitted job gets a ``threading.Event`` for cancel (the HTTP cancel also sets the row's
``cancel_requested`` through ``jobs.request_cancel``, which is what a job run by another process
sees). Two jobs on one dataset may both be given to the pool; ``run_job`` makes the second
wait, reported ``queued``, on the dataset's advisory lock (C6).

The job row stays the single source of truth. The runner also keeps, for each job it runs,
the list of the loop's ``batch`` events of the current run (``JobEntry.batches``), so that the
event stream can report every committed batch exactly; the stream still takes status, counts
and the final record from the row.

While a job waits in the pool's queue, the runner holds the job's session advisory lock (the
one ``run_job`` takes when it starts) on a connection of its own, and lets go just before
``run_job`` starts. So a job waiting here is never taken for an orphan by another process
(``recover_interrupted``, ``prepare_resume`` of a 'pending' job whose creator died).

The runner writes a job row itself in two cases only, both for a job that never reached
``run_job`` (so no other writer can exist): cancelled while waiting in the pool's queue
(-> ``cancelled``), and left in the queue when the service stops (-> ``interrupted``, so it can
be resumed). A job RUNNING when the service stops is cancelled at its next batch and then
recorded ``interrupted`` instead of ``cancelled`` (nobody asked for the cancel).
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


@dataclass
class JobEntry:
    job_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    batches: deque = field(default_factory=lambda: deque(maxlen=BATCH_LOG))
    future: Future | None = None
    user_cancelled: bool = False
    started: bool = False
    held: bool = False  # the runner holds the job's advisory lock while it waits
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
        self._owner_lock = threading.Lock()
        self._owner = None  # connection holding the locks of the jobs waiting in the queue

    # ---- submitting and cancelling

    def submit(self, job_id) -> JobEntry:
        """Run a job (new or resumed) in the background. A previous run of the same job still
        winding down in this process is waited for first (it holds the job's lock)."""
        job_id = str(job_id)
        with self._lock:
            if self.closing.is_set():
                raise RuntimeError("the service is stopping")
            previous = self._jobs.get(job_id)
            entry = JobEntry(job_id)
            entry.held = self._hold(job_id)
            self._jobs[job_id] = entry
            entry.future = self._pool.submit(self._run, entry, previous)
        return entry

    def entry(self, job_id) -> JobEntry | None:
        with self._lock:
            return self._jobs.get(str(job_id))

    def cancel(self, job_id) -> None:
        """Ask the job to stop (it stops after its current batch). A job still waiting in the
        pool's queue is taken out and recorded cancelled at once."""
        entry = self.entry(job_id)
        if entry is None:
            return  # not ours: the row's cancel_requested reaches whoever runs it
        entry.user_cancelled = True
        entry.cancel.set()
        if entry.future is not None and entry.future.cancel():
            self._end_unstarted(entry, "cancelled",
                                "Cancelled before it started; nothing (more) was generated.")

    # ---- the worker

    def _run(self, entry: JobEntry, previous: JobEntry | None) -> None:
        try:
            if previous is not None:
                previous.done.wait()
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
            from service.generation import JobError, run_job
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
            with self._lock:
                if self._jobs.get(entry.job_id) is entry:
                    del self._jobs[entry.job_id]

    def _end_unstarted(self, entry: JobEntry, status: str, message: str) -> None:
        self._mark(entry.job_id, "pending", status, message)
        self._release(entry)
        entry.done.set()
        with self._lock:
            if self._jobs.get(entry.job_id) is entry:
                del self._jobs[entry.job_id]

    # ---- the queue's advisory locks

    def _owner_sql(self, sql_fn, job_id: str) -> bool:
        from service.database import connect
        from service.generation import lock_key
        with self._owner_lock:
            try:
                if self._owner is None or self._owner.closed or self._owner.broken:
                    self._owner = connect(self.url, autocommit=True)
                return bool(self._owner.execute(
                    f"SELECT {sql_fn}({lock_key('job', '%s')})", (job_id,)).fetchone()[0])
            except Exception as exc:  # noqa: BLE001 - the lock only guards against misreading
                log.warning("job %s: advisory lock %s failed: %s", job_id, sql_fn, exc)
                return False

    def _hold(self, job_id: str) -> bool:
        return self._owner_sql("pg_try_advisory_lock", job_id)

    def _release(self, entry: JobEntry) -> None:
        if entry.held:
            entry.held = False
            self._owner_sql("pg_advisory_unlock", entry.job_id)

    def _mark(self, job_id: str, from_status: str, status: str, message: str) -> None:
        """Record the end of a job this runner stopped (see the module docstring)."""
        from service import jobs
        from service.database import connect
        try:
            with connect(self.url) as conn:
                jobs.mark_stopped(conn, job_id, from_status, status, message)
        except Exception:  # noqa: BLE001
            log.exception("could not record job %s as %s", job_id, status)

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
        for entry in entries:
            entry.cancel.set()
        for entry in entries:
            if entry.future is not None and entry.future.cancel():
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
