"""The job runner: the one way both doors (the CLI and the HTTP service) run jobs.

A bounded pool of worker threads calls ``run_job``; the HTTP service runs one runner with
``JOB_WORKERS`` workers for its life, the CLI one with a single worker for its one job, in the
foreground. Threads, never processes: Numba's OpenMP threading layer forbids forking once a
kernel has run, and ``run_job`` releases the GIL in the kernel (nogil) and in PostgreSQL I/O.

Ownership. The runner creates and resumes jobs itself (``create``, ``resume``): it takes the
job's owner lock (``storage.locks``, shared) on its own connection BEFORE the job's row exists
or is made pending again, and keeps it until the job has ended here; ``run_job`` takes its own
while it runs. So a job waiting in this runner is never taken for an orphan, and a job whose
process died (no owner lock left) is recovered as interrupted by the next start. When the
runner's connection is lost and made again, it takes every lock it held again.

Lines. Jobs on one dataset run one after another (C6), and a job waiting for another on its
dataset must not take a worker from jobs on other datasets: the runner keeps, per dataset, a
line of its jobs in submission order; only the first of each line is in the pool, the others
wait, recorded ``queued`` ("waiting for job <id> on this dataset"), and each goes to the pool
(``pending`` again, "waiting for a job worker") when the one before it has ended. (A job of
ANOTHER process on the same dataset is waited for by ``run_job``, on the dataset's writer lock,
also ``queued``, with the same message.)

Stopping. ``cancel`` asks a job to stop (a job waiting in the pool or in a line is recorded
cancelled at once); ``close`` stops the runner: running jobs stop at their next batch and are
recorded ``interrupted`` (resumable: nobody asked for a cancel), waiting ones are recorded
``interrupted`` without starting. Every status change goes through ``engine.states``.

For the event stream the runner keeps, for each job it runs, the loop's ``batch`` events of the
current run (``JobEntry.batches``); status, counts and the final record come from the job row.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Callable

from heimdall_synth.service.engine import states
from heimdall_synth.service.engine.pipeline import StopRequest
from heimdall_synth.service.engine.stops import UNSTARTED_MESSAGE
from heimdall_synth.service.storage import locks

log = logging.getLogger("heimdall.service")

#: Batch events kept per job for the event stream (a 100M-sample job has ~2,000 batches).
BATCH_LOG = 20_000



@dataclass(eq=False)  # compared by identity (lines, lists)
class JobEntry:
    job_id: str
    line: str = ""  # its dataset's line (the dataset id; the job id when it could not be read)
    previous: "JobEntry | None" = None  # an earlier run of the same job, winding down
    listener: Callable[[dict], None] | None = None
    cancel: StopRequest = field(default_factory=StopRequest)
    batches: deque = field(default_factory=lambda: deque(maxlen=BATCH_LOG))
    future: Future | None = None
    held: bool = False  # the runner holds the job's owner lock
    waiting: bool = False  # submitted behind another job of its line: recorded 'queued'
    done: threading.Event = field(default_factory=threading.Event)
    result: object = None  # run_job's JobResult
    error: BaseException | None = None  # what run_job raised (a JobError: the row has it too)

    def on_event(self, event: dict) -> None:
        if event.get("type") == "batch":
            self.batches.append(event)
        if self.listener is not None:
            self.listener(event)


class JobRunner:
    """Runs jobs in ``workers`` background threads; ``threads`` kernel threads per job."""

    def __init__(self, url: str, workers: int = 2, threads: int | None = None,
                 cluster: str | None = None, cluster_workers: int | None = None):
        if workers < 1:
            raise ValueError("JOB_WORKERS must be at least 1")
        self.url = url
        self.threads = threads
        # where jobs evaluate their attempts: a Dask scheduler's address or a local cluster of
        # that many processes (run_job's cluster and workers); in-process when neither
        self.cluster, self.cluster_workers = cluster, cluster_workers
        self.closing = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="heimdall-job")
        self._lock = threading.Lock()
        self._jobs: dict[str, JobEntry] = {}
        self._lines: dict[str, deque[JobEntry]] = {}  # the first of each line is in the pool
        self._owner_lock = threading.Lock()
        self._owner = None  # autocommit connection holding the owner locks of this runner's jobs
        self._held: list[str] = []  # job ids whose owner lock it holds (once per hold)

    # ---- creating, resuming, submitting

    def create(self, conn, request, on_event=None) -> tuple[dict, JobEntry]:
        """Create the job of a validated request (``storage.jobs.create_job``) and run it.
        The job is owned from before its row exists."""
        from heimdall_synth.service.storage.jobs import create_job
        job_id = str(uuid.uuid4())
        self._hold(job_id)
        try:
            created = create_job(conn, request, job_id=job_id)
        except BaseException:
            self._unhold(job_id)
            raise
        return created, self._submit(job_id, created["dataset_id"], on_event)

    def resume(self, conn, job_id, on_event=None) -> tuple[dict, JobEntry]:
        """Make a stopped job pending again (``storage.jobs.prepare_resume``) and run it."""
        from heimdall_synth.service.storage.ids import uuid_of
        from heimdall_synth.service.storage.jobs import prepare_resume
        job_id = uuid_of(job_id, "job_id")
        with self._owner_lock:
            ours = job_id in self._held  # waiting or running here: owned, not resumable
        owner_pid = self._hold(job_id)
        try:
            # The probe leaves out the hold just taken, never one this runner had before.
            job = prepare_resume(conn, job_id, owner_pid=None if ours else owner_pid)
        except BaseException:
            self._unhold(job_id)
            raise
        return job, self._submit(job_id, str(job["dataset_id"]), on_event)

    def submit(self, job_id, on_event=None) -> JobEntry:
        """Run a job that exists already and is pending (created by ``storage.jobs``)."""
        job_id = str(job_id)
        self._hold(job_id)
        row = self._with_owner(lambda c: c.execute(
            "SELECT dataset_id FROM heimdall.generation_jobs WHERE id = %s", (job_id,)).fetchone())
        return self._submit(job_id, str(row[0]) if row and row[0] else None, on_event)

    def _submit(self, job_id: str, dataset_id: str | None, on_event) -> JobEntry:
        """Queue a job whose owner lock this runner holds (once more) already."""
        with self._lock:
            if self.closing.is_set():
                self._unhold(job_id)
                raise RuntimeError("the service is stopping")
            entry = JobEntry(job_id, line=dataset_id or job_id, previous=self._jobs.get(job_id),
                             listener=on_event, held=True)
            self._jobs[job_id] = entry
            line = self._lines.setdefault(entry.line, deque())
            line.append(entry)
            if len(line) == 1:
                entry.future = self._pool.submit(self._run, entry)
            else:
                entry.waiting = True
                ahead = line[-2].job_id
                message = ("waiting for its previous run to end" if ahead == job_id
                           else states.queued_message(ahead))
                self._with_owner(lambda c: states.transition(
                    c, job_id, "queued", expect="pending", progress_message=message))
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
        entry.cancel.stop("cancelled")
        with self._lock:
            waiting = self._leave_line(entry)  # behind another job of its dataset: never starts
        if waiting or (entry.future is not None and entry.future.cancel()):
            self._end_unstarted(entry, "cancelled")

    # ---- the worker

    def _run(self, entry: JobEntry) -> None:
        from heimdall_synth.service.engine.loop import run_job
        from heimdall_synth.service.engine.stops import JobError
        try:
            if entry.previous is not None:
                entry.previous.done.wait()
            if entry.cancel.is_set():
                self._end_unstarted(entry, entry.cancel.reason)
                return
            try:
                entry.result = result = run_job(self.url, entry.job_id, threads=self.threads,
                                                cancel=entry.cancel, on_event=entry.on_event,
                                                cluster=self.cluster,
                                                workers=self.cluster_workers)
            except JobError as exc:
                entry.error = exc
                log.error("Job %s failed: %s", entry.job_id, exc)
                return
            log.info("Job %s ended %s (%s): %s", entry.job_id, result.status,
                     result.stopped_reason, result.message)
        except Exception as exc:  # noqa: BLE001 - a worker must never die silently
            entry.error = exc
            log.exception("Job %s: unexpected error in the job runner", entry.job_id)
        finally:
            self._finish(entry)

    def _end_unstarted(self, entry: JobEntry, status: str) -> None:
        message = UNSTARTED_MESSAGE[status]
        self._with_owner(lambda c: states.transition(
            c, entry.job_id, status, expect=("pending", "queued"), stopped_reason=status,
            stop_message=message, progress_message=message))
        self._finish(entry)

    def _finish(self, entry: JobEntry) -> None:
        """The job has ended here: let go of it, and give the next job of its line to the pool."""
        if entry.held:
            entry.held = False
            self._unhold(entry.job_id)
        entry.done.set()
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
                nxt = line[0]
                # before run_job can start: it may record 'queued' itself
                self._with_owner(lambda c: states.transition(
                    c, nxt.job_id, "pending", expect="queued",
                    progress_message=states.WAITING_FOR_WORKER))
                nxt.future = self._pool.submit(self._run, nxt)

    def _leave_line(self, entry: JobEntry) -> bool:
        """Under self._lock: take a job that waits behind another of its dataset (not yet in
        the pool) out of its line; False when it is not waiting there."""
        line = self._lines.get(entry.line)
        if entry.future is not None or line is None or entry not in line:
            return False
        line.remove(entry)
        return True

    # ---- the owner connection and its locks

    def _with_owner(self, work):
        """``work(conn)`` on the runner's own connection; its result, or None when the database
        failed (the job row and ``run_job`` stay the source of truth)."""
        with self._owner_lock:
            try:
                return work(self._owner_connection())
            except Exception as exc:  # noqa: BLE001
                log.warning("job runner: database work failed: %s", exc)
                return None

    def _owner_connection(self):
        """Under self._owner_lock: the runner's connection. A lost one is made again, and every
        owner lock this runner held is taken again on it (a reconnect must not drop them)."""
        from heimdall_synth.service.storage.database import connect
        if self._owner is None or self._owner.closed or self._owner.broken:
            if self._owner is not None:
                log.warning("job runner: its database connection was lost; taking the owner "
                            "locks of %d jobs again", len(self._held))
                self._owner.close()
            self._owner = connect(self.url, autocommit=True)
            for job_id in self._held:
                locks.hold_shared(self._owner, locks.job_key(job_id))
        return self._owner

    def _hold(self, job_id: str) -> int:
        """Take the job's owner lock (once more); the backend pid holding it. Raises when the
        database cannot be reached: a job is never run unowned."""
        with self._owner_lock:
            owner = self._owner_connection()
            locks.hold_shared(owner, locks.job_key(job_id))
            self._held.append(job_id)
            return owner.info.backend_pid

    def _unhold(self, job_id: str) -> None:
        with self._owner_lock:
            if job_id in self._held:
                self._held.remove(job_id)
        self._with_owner(lambda c: locks.release_shared(c, locks.job_key(job_id)))

    # ---- stopping

    def active(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def close(self, timeout: float = 10.0) -> None:
        """Stop: running jobs end at their next batch (recorded ``interrupted``), waiting ones
        are recorded ``interrupted`` without starting. Waits up to ``timeout`` seconds."""
        with self._lock:
            self.closing.set()
            entries = list(self._jobs.values())
            waiting = [e for e in entries if self._leave_line(e)]
        for entry in entries:
            entry.cancel.stop("interrupted")
        for entry in entries:
            if entry in waiting or (entry.future is not None and entry.future.cancel()):
                self._end_unstarted(entry, "interrupted")
        wait([e.future for e in entries if e.future is not None], timeout=timeout)
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._owner_lock:
            if self._owner is not None:
                self._owner.close()  # lets go of any lock still held
                self._owner = None
