"""The generation loop (SPEC 6): attempts from the dataset's cursor, in batches, to the target.

Each batch: kernel -> binary COPY of the accepted samples it consumes -> dataset counters and
job progress -> ONE commit (contract C3). Accepted samples are consumed in attempt order, only
as many as the job still needs; the cursor moves to just after the last attempt consumed, so no
attempt is skipped or used twice and any split of a dataset into jobs writes the same rows (C4).
A producer thread runs the kernel and packs one batch ahead, and two ingest lanes COPY
consecutive batches on two connections, committing in batch order. A job holds a session
advisory lock on its dataset for its whole run, so two jobs on one dataset never interleave
(C6), and one on itself, so a job left 'running' by a dead process is recognisable (C5).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from heimdall_synth.kernel import REJECT_REASONS, GenerationConfig
from heimdall_synth.kernel.batch import AttemptBatch, pack_config, run_attempts

from heimdall_synth.service.storage.copy_rows import copy_batch, pack_feature_rows, row_data_bytes
from heimdall_synth.service.storage.database import connect

log = logging.getLogger("heimdall.generation")

AUTO_BATCH_ATTEMPTS = 50_000    # ~0.1 s of kernel, ~0.7 s of COPY here: cancel under 1 s
FIRST_BATCH_ATTEMPTS = 8_192    # then x4 per batch up to the batch size
CHUNK_ATTEMPTS = 8_192          # the producer's unit of work within a batch
INGEST_STREAMS = 2              # connections COPYing batches side by side (commits in order)
QUEUE_POLL_S = 0.2
ADVICE = {
    "tx_off": "the transmitter is off in 0-20 % of attempts by design (duty cycle); nothing to relax",
    "min_receivers": "lower min_receivers (now {min_receivers}) or min_snr_db (now {min_snr_db:g} dB), "
                     "or raise tx_power_dbm",
    "min_snr": "lower min_snr_db (now {min_snr_db:g} dB)",
    "gdop": "raise max_gdop (now {max_gdop:g}) or use a network that surrounds the area",
    "crb": "raise max_crb_m (now {max_crb_m}) or remove it",
}


def lock_key(kind: str, ident) -> str:
    """SQL for the bigint advisory-lock key of a dataset or a job."""
    return f"hashtextextended('heimdall-synth:{kind}:' || {ident}::text, 0)"


@dataclass
class JobResult:
    job_id: str
    status: str
    stopped_reason: str
    requested: int
    generated: int
    attempted: int
    samples_offset: int
    final_count: int
    rejections: dict
    message: str
    device: str
    duration_s: float
    events: list = field(default_factory=list)
    generated_this_run: int = 0

    @property
    def samples_per_second(self) -> float:
        """Of this run (a resumed job's earlier runs are not in duration_s)."""
        return self.generated_this_run / self.duration_s if self.duration_s > 0 else 0.0


class JobError(RuntimeError):
    """The job failed; it is recorded on the job row with the committed counts."""


def stop_message(reason: str, generated: int, requested: int, attempted: int, rejections: dict,
                 cfg: GenerationConfig, options: dict) -> str:
    """A sentence a person can act on: what stopped the job and what to relax."""
    if reason == "target_reached":
        return f"Generated all {requested:,} samples in {attempted:,} attempts."
    why = {
        "max_attempts": f"the attempt budget (max_attempts {options['max_attempts']:,}) ran out",
        "stalled": f"{options['max_consecutive_rejections']:,} attempts in a row were rejected",
        "cancelled": "the job was cancelled",
        "failed": "an error stopped it",
        "interrupted": "its process ended",
    }[reason]
    text = f"Stopped with {generated:,} of {requested:,} samples after {attempted:,} attempts: {why}."
    rejected = {k: v for k, v in rejections.items() if v}
    if rejected and reason in ("max_attempts", "stalled"):
        top = max(rejected, key=rejected.get)
        share = rejected[top] / max(attempted, 1)
        values = {**cfg.to_dict(), "max_crb_m": cfg.max_crb_m}
        text += (f" Most rejections were '{top}' ({share:.0%} of attempts): "
                 f"{ADVICE[top].format(**values)}.")
    return text


def consume(batch: AttemptBatch, need: int, run_before: int, max_run: int):
    """How much of a batch the job consumes, in attempt order.

    Returns (rows to store, attempts consumed, stalled, rejected run after the consumed part):
    it takes accepted attempts until ``need`` are taken, and stops at the attempt that makes
    ``max_run`` rejections in a row (``run_before`` of them from earlier batches).
    """
    n = len(batch)
    accepted = np.flatnonzero(batch.valid)
    consumed = n if len(accepted) < need else int(accepted[need - 1]) + 1
    # Length of the rejected run ending at each attempt: position - last accepted position.
    positions = np.arange(n)
    last_accepted = np.maximum.accumulate(np.where(batch.valid, positions, -1 - run_before))
    run = positions - last_accepted
    stall = np.flatnonzero(run[:consumed] >= max_run)
    stalled = stall.size > 0
    if stalled:
        consumed = int(stall[0]) + 1
    rows = accepted[accepted < consumed][:need]
    run_after = int(run[consumed - 1]) if consumed else run_before
    return rows, consumed, stalled, run_after


class QualityAggregates:
    """Running sums of a dataset's sample quality, kept in synthetic_datasets.quality_metrics.

    Only finite values are summed, and each field counts its finite values: a valid sample's
    CRB is +inf when exactly three receivers detect and the transmitter sits on their
    circumcircle (inverted about the transmitter, u_i / d_i fall on a line, so RSS with unknown
    power cannot fix the position though the GDOP geometry is fine)."""

    FIELDS = ("gdop", "hdop", "crb_m", "mean_snr_db", "overall_confidence")

    def __init__(self, stored: dict | None):
        self.m = dict(stored or {})
        self.m.setdefault("samples", 0)
        self.m.setdefault("sum_detected_receivers", 0)
        for f in self.FIELDS:
            self.m.setdefault(f"sum_{f}", 0.0)
            self.m.setdefault(f"finite_{f}", 0)
        self.m.setdefault("min_gdop", None)
        self.m.setdefault("max_gdop", None)

    @classmethod
    def partial(cls, batch: AttemptBatch, rows: np.ndarray) -> dict:
        """The sums of the samples ``rows`` of ``batch`` (computed by the producer)."""
        part = {"samples": len(rows),
                "sum_detected_receivers": int(batch.n_detected[rows].sum())}
        for f in cls.FIELDS:
            values = getattr(batch, f)[rows]
            finite = values[np.isfinite(values)]
            part[f"sum_{f}"] = float(finite.sum())
            part[f"finite_{f}"] = int(finite.size)
        gdop = batch.gdop[rows]
        gdop = gdop[np.isfinite(gdop)]
        part["min_gdop"] = float(gdop.min()) if gdop.size else None
        part["max_gdop"] = float(gdop.max()) if gdop.size else None
        return part

    def sums(self) -> dict:
        """The sums alone, in the form ``partial`` makes (to merge into another)."""
        keys = ["samples", "sum_detected_receivers", "min_gdop", "max_gdop"]
        keys += [f"{kind}_{f}" for f in self.FIELDS for kind in ("sum", "finite")]
        return {k: self.m[k] for k in keys}

    def add(self, part: dict) -> dict:
        """Merge a batch's partial sums; return the metrics to store."""
        for key, value in part.items():
            if key in ("min_gdop", "max_gdop"):
                if value is not None:
                    pick = min if key == "min_gdop" else max
                    self.m[key] = value if self.m[key] is None else pick(value, self.m[key])
            else:
                self.m[key] += value
        for f in self.FIELDS:
            count = self.m[f"finite_{f}"]
            self.m[f"mean_{f}"] = self.m[f"sum_{f}"] / count if count else None
        samples = self.m["samples"]
        self.m["mean_detected_receivers"] = (self.m["sum_detected_receivers"] / samples
                                             if samples else None)
        return self.m


def _device(threads: int | None) -> str:
    import numba
    return f"cpu (numba {numba.__version__}, {threads or numba.get_num_threads()} threads)"


def run_job(url: str, job_id, *, threads: int | None = None,
            cancel: threading.Event | None = None,
            on_event: Callable[[dict], None] | None = None) -> JobResult:
    """Run (or resume) a job to its end; return its final record.

    Waits, as 'queued', while another job holds the dataset. ``cancel`` (in-process) and the
    job row's ``cancel_requested`` (any process) stop it after the current batch. A job that
    stops short (budget, stall) ends 'failed' with its stop reason and a message saying what to
    relax; it is returned, not raised. An error rolls back the open batch, records the job
    'failed' with its committed counts and the error, and raises JobError. ``on_event``
    receives progress, batch and final events (dicts).
    """
    job_id = str(job_id)
    t0 = time.perf_counter()
    events: list[dict] = []

    def emit(event: dict) -> None:
        events.append(event)
        if on_event is not None:
            on_event(event)

    lock_conn = connect(url, autocommit=True)   # holds the advisory locks for the job's life
    conn = connect(url)
    try:
        job = _load_job(conn, job_id)
        if job["status"] in ("completed",):
            raise JobError(f"job {job_id} is already completed")
        if not lock_conn.execute(f"SELECT pg_try_advisory_lock({lock_key('job', '%s')})",
                                 (job_id,)).fetchone()[0]:
            raise JobError(f"job {job_id} is being run by another process")
        dataset_id = str(job["dataset_id"])
        if not _try_dataset_lock(lock_conn, dataset_id):
            _set_status(conn, job_id, "queued", "waiting for another job on this dataset")
            emit({"type": "status", "status": "queued", "job_id": job_id})
            while not _try_dataset_lock(lock_conn, dataset_id):
                if (cancel is not None and cancel.is_set()) or _cancel_requested(conn, job_id):
                    return _finish_unstarted(conn, job, "cancelled", t0, emit, events)
                time.sleep(QUEUE_POLL_S)
        return _run_locked(url, conn, job_id, threads, cancel, emit, events, t0)
    finally:
        conn.close()
        lock_conn.close()  # releases the advisory locks


def _try_dataset_lock(lock_conn, dataset_id: str) -> bool:
    return lock_conn.execute(f"SELECT pg_try_advisory_lock({lock_key('dataset', '%s')})",
                             (dataset_id,)).fetchone()[0]


def _cancel_requested(conn, job_id: str) -> bool:
    with conn.transaction():
        row = conn.execute("SELECT cancel_requested FROM heimdall.generation_jobs WHERE id = %s",
                           (job_id,)).fetchone()
    return bool(row and row[0])


def _load_job(conn, job_id: str) -> dict:
    with conn.transaction():
        cur = conn.execute("SELECT * FROM heimdall.generation_jobs WHERE id = %s", (job_id,))
        row = cur.fetchone()
        if row is None:
            raise JobError(f"no job {job_id}")
        return dict(zip([c.name for c in cur.description], row))


def _set_status(conn, job_id: str, status: str, message: str) -> None:
    with conn.transaction():
        conn.execute("UPDATE heimdall.generation_jobs SET status = %s, progress_message = %s, "
                     "heartbeat_at = now() WHERE id = %s", (status, message, job_id))


def _finish_unstarted(conn, job, reason, t0, emit, events) -> JobResult:
    """A job cancelled before it ran a batch (while pending or queued)."""
    message = f"Cancelled before it started; {job['generated']:,} samples were generated."
    with conn.transaction():
        conn.execute("UPDATE heimdall.generation_jobs SET status = 'cancelled', stopped_reason = "
                     "'cancelled', stop_message = %s, progress_message = %s, "
                     "finished_at = now() WHERE id = %s", (message, message, str(job["id"])))
    result = JobResult(str(job["id"]), "cancelled", "cancelled", job["requested"],
                       job["generated"], job["attempted"], job["samples_offset"] or 0, -1,
                       job["rejections"], message, "none", time.perf_counter() - t0, events)
    emit({"type": "final", **_result_event(result)})
    return result


def _result_event(r: JobResult) -> dict:
    return {"job_id": r.job_id, "status": r.status, "stopped_reason": r.stopped_reason,
            "requested": r.requested, "generated": r.generated, "attempted": r.attempted,
            "samples_offset": r.samples_offset, "final_count": r.final_count,
            "rejections": r.rejections, "message": r.message, "device": r.device,
            "duration_s": round(r.duration_s, 3),
            "samples_per_second": round(r.samples_per_second, 1)}


def progress_text(offset: int, generated: int, requested: int) -> str:
    total = offset + generated
    text = f"{total:,} / {offset + requested:,}"
    return text + (f" (continued from {offset:,})" if offset else "")


@dataclass
class PackedBatch:
    """What the producer hands the committer: one batch, consumed and packed."""

    number: int
    first_attempt: int
    attempts: int         # evaluated by the kernel
    valid: int            # valid among them
    consumed: int         # attempts the job uses (the cursor moves by this)
    kept: int             # samples it stores
    quality: dict         # their quality sums (QualityAggregates.partial)
    buffer: object        # their binary COPY data, a list of chunks (None when there are none)
    rejections: np.ndarray  # by reason code, over the consumed attempts
    run_after: int        # rejected attempts in a row after this batch
    stalled: bool
    sample_offset: int    # sample_index of its first row
    seconds: float = 0.0  # the producer's time on it (kernel, consume, pack)


class Producer:
    """Stage one of the pipeline, in its own thread: kernel -> consume -> pack, one batch
    ahead of the committer. It follows the job's state (cursor, still needed, rejected run)
    on the assumption that each batch commits; if one does not, the job stops and whatever
    the producer made ahead is dropped, so nothing speculative ever reaches the database.

    A batch is made in chunks of CHUNK_ATTEMPTS attempts, each packed into its own COPY buffer,
    so the producer's working set stays small (it shares the machine's caches with the
    database backend ingesting the previous batch) and no large array is allocated per batch.
    """

    def __init__(self, cfg, seed, threads, dataset_id, job_id, frequency_hz, batch_size,
                 cursor, budget_left, need, run, max_run, first_sample):
        self.cfg, self.seed, self.threads = cfg, seed, threads
        self.dataset_id, self.job_id, self.frequency_hz = dataset_id, job_id, frequency_hz
        self.batch_size, self.cursor, self.budget_left = batch_size, cursor, budget_left
        self.need, self.run, self.max_run, self.next_sample = need, run, max_run, first_sample
        self.inputs = pack_config(cfg)
        self.buffer = AttemptBatch.empty(CHUNK_ATTEMPTS, self.inputs.max_receivers)
        self.number = 0
        self.acceptance = 0.9  # running estimate, sizes the last batches (never the results)

    def next(self) -> PackedBatch | None:
        """The next batch, or None when the job needs nothing more or the budget is spent."""
        if self.need <= 0 or self.budget_left <= 0 or self.run >= self.max_run:
            return None
        lower_priority()
        t0 = time.perf_counter()
        # Size a batch for what is still needed, starting small so the first COPY starts at
        # once and the pipeline fills (results never depend on batch sizes: C4).
        wanted = int(self.need * 1.2 / max(self.acceptance, 0.02)) + 256
        ramp = FIRST_BATCH_ATTEMPTS * 4 ** self.number
        count = min(self.batch_size, self.budget_left, ramp, max(wanted, 1024))
        first_attempt, first_sample = self.cursor, self.next_sample
        chunks, evaluated, valid, consumed, kept, stalled = [], 0, 0, 0, 0, False
        rejections = np.zeros(len(REJECT_REASONS) + 1, np.int64)
        quality = QualityAggregates(None)
        while evaluated < count and self.need > 0 and not stalled:
            n = min(CHUNK_ATTEMPTS, count - evaluated)
            batch = run_attempts(self.cfg, self.seed, self.cursor, n, threads=self.threads,
                                 inputs=self.inputs, out=self.buffer)
            take, used, stalled, self.run = consume(batch, self.need, self.run, self.max_run)
            if len(take):
                chunks.append(pack_feature_rows(batch, self.dataset_id, self.next_sample,
                                                self.job_id, self.frequency_hz, rows=take))
                quality.add(QualityAggregates.partial(batch, take))
            rejections += np.bincount(batch.reject_reason[:used],
                                      minlength=len(REJECT_REASONS) + 1)
            evaluated += n
            valid += int(batch.valid.sum())
            consumed += used
            kept += len(take)
            self.cursor += used
            self.budget_left -= used
            self.need -= len(take)
            self.next_sample += len(take)
            if used < n:  # target reached or stalled inside this chunk
                break
        self.acceptance = max(valid / max(evaluated, 1), 0.001)
        self.number += 1
        return PackedBatch(self.number, first_attempt, evaluated, valid, consumed, kept,
                           quality.sums(), chunks or None, rejections, self.run, stalled,
                           first_sample, time.perf_counter() - t0)


PRODUCER_NICENESS = 10


def lower_priority() -> None:
    """Make the calling thread yield the CPU to others (Linux: per-thread nice value).

    The producer has slack (it makes a batch in about a third of the time the database takes
    to ingest one), while PostgreSQL's COPY runs serially in one backend process: when the two
    share a core, the backend should win. Best effort: other systems keep the default."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRODUCER_NICENESS)
    except (AttributeError, OSError):
        pass


def default_job_threads() -> int:
    """Kernel threads for a job: all cores but one, which the database's COPY needs (on a
    2-core machine the kernel on one core still outruns PostgreSQL's ingest several times)."""
    return max(1, (os.cpu_count() or 2) - 1)


class BatchAborted(Exception):
    """A batch in flight is dropped because the one before it ended the job or failed."""


class Lane:
    """One ingest stream: a connection and a thread that COPY a batch and then commit it.

    Two lanes let the database ingest batch k+1 on one backend while batch k commits on the
    other; a batch's counters are written and committed only after the batch before it has
    committed, so commits keep batch order and every one carries its rows and its counters
    together (C3). If the batch before failed, or the job stopped, the batch rolls back.
    """

    def __init__(self, url: str, number: int):
        self.conn = connect(url)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"heimdall-ingest-{number}")

    def submit(self, dataset_id, job_id, packed, counters, previous, abort):
        return self.pool.submit(_commit_batch, self.conn, dataset_id, job_id, packed, counters,
                                previous, abort)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.conn.close()


def _commit_batch(conn, dataset_id, job_id, packed, counters, previous, abort):
    """COPY one batch, wait for the previous batch's commit, write the counters, commit.
    Returns (dataset total, cancel requested, COPY seconds, wait-counters-commit seconds)."""
    quality_json, rejections_json, msg = counters
    t0 = time.perf_counter()
    with conn.transaction():
        with conn.cursor() as cur:
            if packed.kept:
                copy_batch(cur, packed.buffer)
            t_copied = time.perf_counter()
            if previous is not None:
                previous.result()  # raises when it failed or was aborted: this one rolls back
            if abort.is_set():
                raise BatchAborted()
            # storage_size_bytes stays NULL (unknown) on a dataset made before it was kept.
            total = cur.execute(
                "UPDATE heimdall.synthetic_datasets SET num_samples = num_samples + %s, "
                "next_attempt_index = %s, quality_metrics = %s, "
                "storage_size_bytes = storage_size_bytes + %s, updated_at = now() "
                "WHERE id = %s RETURNING num_samples",
                (packed.kept, packed.first_attempt + packed.consumed, quality_json,
                 row_data_bytes(packed.buffer), dataset_id)).fetchone()[0]
            cancel_flag = cur.execute(
                "UPDATE heimdall.generation_jobs SET generated = generated + %s, "
                "attempted = attempted + %s, rejections = %s, consecutive_rejections = %s, "
                "progress_message = %s, heartbeat_at = now() WHERE id = %s "
                "RETURNING cancel_requested",
                (packed.kept, packed.consumed, rejections_json, packed.run_after, msg,
                 job_id)).fetchone()[0]
    return total, cancel_flag, t_copied - t0, time.perf_counter() - t_copied


def _committed_rejections(conn, job_id, fallback: dict) -> dict:
    """The job's rejection counts as committed (batches made ahead may have rolled back)."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT rejections FROM heimdall.generation_jobs WHERE id = %s",
                               (job_id,)).fetchone()
        return {k: int(row[0].get(k, 0)) for k in REJECT_REASONS} if row else fallback
    except Exception:  # noqa: BLE001 - the connection may be gone; _finish reports that
        return fallback


def _run_locked(url, conn, job_id, threads, cancel, emit, events, t0) -> JobResult:
    job = _load_job(conn, job_id)
    if job["status"] == "cancelled" or job["cancel_requested"] or (cancel is not None
                                                                   and cancel.is_set()):
        return _finish_unstarted(conn, job, "cancelled", t0, emit, events)
    if job["status"] not in ("pending", "queued", "running"):
        raise JobError(f"job {job_id} is {job['status']}: resume it first (only interrupted, "
                       "cancelled or failed jobs can be resumed)")
    spec = job["config"]
    cfg = GenerationConfig.from_dict(spec["config"])
    seed, options = int(spec["seed"]), spec["options"]
    threads = threads or default_job_threads()
    device = _device(threads)
    with conn.transaction():
        ds = conn.execute(
            "SELECT num_samples, next_attempt_index, quality_metrics FROM "
            "heimdall.synthetic_datasets WHERE id = %s FOR UPDATE", (job["dataset_id"],)).fetchone()
        num_samples, cursor, metrics = ds
        offset = job["samples_offset"] if job["samples_offset"] is not None else num_samples
        conn.execute(
            "UPDATE heimdall.generation_jobs SET status = 'running', samples_offset = %s, "
            "device = %s, started_at = coalesce(started_at, now()), heartbeat_at = now(), "
            "error = NULL, stopped_reason = NULL, stop_message = NULL, finished_at = NULL "
            "WHERE id = %s", (offset, device, job_id))
    requested = int(job["requested"])
    generated, attempted = int(job["generated"]), int(job["attempted"])
    run_start = generated
    rejections = {k: int(job["rejections"].get(k, 0)) for k in REJECT_REASONS}
    max_attempts = int(options["max_attempts"])
    max_run = int(options["max_consecutive_rejections"])
    batch_size = int(options["batch_size"] or AUTO_BATCH_ATTEMPTS)
    quality = QualityAggregates(metrics)
    dataset_id = uuid.UUID(str(job["dataset_id"]))

    if job["kind"] == "expand":
        log.info("Expanding dataset %s (current samples: %d)", dataset_id, num_samples)
    log.debug("[GENERATION DEBUG] Target: %d valid samples, max attempts: %d",
              requested, max_attempts)
    log.debug("[GENERATION DEBUG] Batch size: %d attempts, device: %s", batch_size, device)
    emit({"type": "progress", "job_id": job_id, "status": "running",
          "message": progress_text(offset, generated, requested), "generated": generated,
          "requested": requested, "samples_offset": offset, "committed_count": num_samples})

    producer = Producer(cfg, seed, threads, dataset_id, uuid.UUID(job_id), cfg.frequency_mhz * 1e6,
                        batch_size, cursor, max_attempts - attempted, requested - generated,
                        int(job["consecutive_rejections"]), max_run, offset + generated)
    reason = error = None
    exhausted = False
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heimdall-producer")
    lanes: list[Lane] = []
    inflight: deque = deque()
    abort = threading.Event()
    pending = previous = None

    def committed(packed, total, msg, cumulative, t_copy, t_commit):
        """Count a batch that committed and report it; returns (generated, attempted)."""
        k = packed.kept
        new_generated, new_attempted = generated + k, attempted + packed.consumed
        if k:
            log.debug("[DB SAVE DEBUG] Saved %d samples to database (%d total): COPY %.3f s, "
                      "counters and commit %.3f s", k, total, t_copy, t_commit)
        log.info("Batch %d complete: %d valid samples | Total: %d/%d valid (%d attempted, "
                 "%.1f%% success rate)", packed.number, k, new_generated, requested,
                 new_attempted, 100.0 * new_generated / max(new_attempted, 1))
        log.debug("[DB COUNT DEBUG] Expected cumulative: %d, Actual in DB: %d",
                  offset + new_generated, total)
        log.debug("[PROGRESS DEBUG] %s", msg)
        emit({"type": "batch", "job_id": job_id, "batch": packed.number, "saved": k,
              "generated": new_generated, "requested": requested, "attempted": new_attempted,
              "samples_offset": offset, "committed_count": total, "message": msg,
              "rejections": cumulative,
              # this run's samples over this run's time (a resumed job's earlier runs apart)
              "rate": (new_generated - run_start) / max(time.perf_counter() - t0, 1e-9)})
        return new_generated, new_attempted

    try:
        if offset + generated != num_samples:
            raise JobError(
                f"dataset {dataset_id} holds {num_samples:,} samples but this job would continue"
                f" at {offset + generated:,}: another job wrote to it since; start a new "
                f"expansion for the {requested - generated:,} samples still wanted")
        lanes = [Lane(url, i) for i in range(INGEST_STREAMS)]
        pending = pool.submit(producer.next)
        submitted_generated = generated
        while True:
            # Keep every lane busy: COPY batch k+1 while batch k commits (in order).
            if not exhausted and len(inflight) < len(lanes):
                t_wait = time.perf_counter()
                packed = pending.result()
                t_wait = time.perf_counter() - t_wait
                if packed is None:
                    exhausted = True
                    continue
                pending = pool.submit(producer.next)  # made while the lanes COPY
                k = packed.kept
                for i, name in enumerate(REJECT_REASONS, start=1):
                    rejections[name] += int(packed.rejections[i])
                submitted_generated += k
                log.debug("[BATCH DEBUG] batch %d: attempts %d..%d, %d valid, %d consumed, %d "
                          "kept; made in %.3f s (waited %.3f s for it)", packed.number,
                          packed.first_attempt, packed.first_attempt + packed.attempts - 1,
                          packed.valid, packed.consumed, k, packed.seconds, t_wait)
                if k:
                    log.debug("[DB SAVE DEBUG] About to save %d samples (indices %d..%d)",
                              k, packed.sample_offset, packed.sample_offset + k - 1)
                counters = (Jsonb(quality.add(packed.quality)), Jsonb(dict(rejections)),
                            progress_text(offset, submitted_generated, requested))
                lane = lanes[packed.number % len(lanes)]
                previous = lane.submit(dataset_id, job_id, packed, counters, previous, abort)
                inflight.append((packed, previous, counters[2], dict(rejections)))
                continue
            if not inflight:
                break
            packed, done, msg, cumulative = inflight.popleft()
            total, cancel_flag, t_copy, t_commit = done.result()
            generated, attempted = committed(packed, total, msg, cumulative, t_copy, t_commit)
            if packed.stalled:
                reason = "stalled"
                break
            if cancel_flag or (cancel is not None and cancel.is_set()):
                reason = "cancelled"
                break
        if reason is None:
            reason = ("target_reached" if generated >= requested else
                      "stalled" if producer.run >= max_run else "max_attempts")
    except BaseException as exc:  # the open batches roll back with their transactions
        reason, error = "failed", exc
    finally:
        abort.set()  # a batch still in flight rolls back instead of committing ...
        for packed, done, msg, cumulative in inflight:
            try:
                total, _, t_copy, t_commit = done.result()
            except BaseException:  # noqa: BLE001 - aborted or failed: rolled back either way
                continue
            # ... unless it had passed its abort check already (the stop was decided while it
            # waited for the batch before): it committed, so the job counts it.
            generated, attempted = committed(packed, total, msg, cumulative, t_copy, t_commit)
        if pending is not None:
            pending.cancel()
        pool.shutdown(wait=True)
        for lane in lanes:
            lane.close()
    # The job's counters are those of the batches that committed (the rest rolled back).
    rejections = _committed_rejections(conn, job_id, rejections)

    return _finish(conn, job, job_id, reason, error, cfg, options, offset, requested,
                   generated, attempted, rejections, device, t0, emit, events)


def _finish(conn, job, job_id, reason, error, cfg, options, offset, requested, generated,
            attempted, rejections, device, t0, emit, events) -> JobResult:
    """Reconcile the counts with the table, record the job's final state, report."""
    dataset_id = job["dataset_id"]
    log.debug("[GENERATION COMPLETE DEBUG] generated=%d attempted=%d stopped_reason=%s",
              generated, attempted, reason)
    if conn.info.transaction_status != 0:  # the failed batch's transaction is still open
        conn.rollback()
    final_count = -1
    if reason != "failed" or not _connection_broken(conn):
        try:
            final_count, meta_count = _final_count(conn, dataset_id, offset, generated)
            log.debug("[FINAL COUNT DEBUG] samples_offset=%d, stats_generated=%d",
                      offset, generated)
            log.debug("Query returned actual_count=%d from database", final_count)
            if final_count != offset + generated or meta_count != final_count:
                log.error("[FINAL COUNT DEBUG] count mismatch: expected %d, dataset says %d, "
                          "table holds %d", offset + generated, meta_count, final_count)
                if reason != "failed":
                    reason, error = "failed", JobError(
                        f"count mismatch: expected {offset + generated}, dataset says "
                        f"{meta_count}, table holds {final_count}")
        except Exception as exc:  # noqa: BLE001 - recorded on the job below
            if reason != "failed":
                reason, error = "failed", exc
    status = {"target_reached": "completed", "cancelled": "cancelled"}.get(reason, "failed")
    message = stop_message(reason, generated, requested, attempted, rejections, cfg, options)
    if error is not None:
        message += (f" Error: {type(error).__name__}: {str(error).rstrip().rstrip('.')}."
                    + database_advice(error))
    duration = time.perf_counter() - t0
    result = JobResult(job_id, status, reason, requested, generated, attempted, offset,
                       final_count, rejections, message, device, duration, events,
                       generated - int(job["generated"]))
    _record_end(conn, job_id, status, reason, message, error)
    emit({"type": "final", **_result_event(result)})
    if error is not None:
        log.error("Job %s failed: %s", job_id, message)
        raise JobError(message) from (error if isinstance(error, Exception) else None)
    return result


#: What to do about a database error that stopped a job, by SQLSTATE (prefix).
DATABASE_ADVICE = (
    ("53100", "The database server's disk is full: free space there (or give the tablespace "
              "more room)"),
    ("53", "The database server ran out of a resource (memory, connections): relieve it"),
    ("57014", "The server cancelled a statement (it ran past statement_timeout, or someone "
              "called pg_cancel_backend): raise or lift the timeout (ALTER DATABASE ... SET "
              "statement_timeout)"),
    ("57P", "The database server ended the job's connection (shut down, restarted or an "
            "administrator terminated it): wait until it answers"),
    ("08", "The connection to the database was lost: wait until it answers"),
)


def database_advice(error: BaseException) -> str:
    """' <what to do>, then resume the job ...' for a database error, else ''. A batch commits
    whole or not at all, so the resume continues exactly after the last committed one."""
    code = getattr(error, "sqlstate", None)
    if code is None and isinstance(error, psycopg.OperationalError):
        code = "08"  # lost without a reply: no SQLSTATE
    for prefix, text in DATABASE_ADVICE:
        if code is not None and code.startswith(prefix):
            return (f" {text}, then resume the job: nothing committed is lost, and it "
                    "continues from the last committed batch.")
    return ""


def _connection_broken(conn) -> bool:
    return conn.closed or conn.broken


def _final_count(conn, dataset_id, offset: int, generated: int) -> tuple[int, int]:
    """(actual rows, the dataset's num_samples). The rows of this job's index range are counted
    through the (dataset_id, sample_index) index, and the range below it is certified by the
    highest index below the offset: indices are unique and every job verified its own range,
    so this equals COUNT(*) while costing O(job), not O(dataset) (SPEC 12; `validate` does the
    full COUNT)."""
    with conn.transaction():
        meta = conn.execute("SELECT num_samples FROM heimdall.synthetic_datasets WHERE id = %s",
                            (dataset_id,)).fetchone()[0]
        new_rows = conn.execute(
            "SELECT count(*) FROM heimdall.measurement_features WHERE dataset_id = %s "
            "AND sample_index >= %s", (dataset_id, offset)).fetchone()[0]
        below = conn.execute(
            "SELECT max(sample_index) FROM heimdall.measurement_features WHERE dataset_id = %s "
            "AND sample_index < %s", (dataset_id, offset)).fetchone()[0]
    earlier = 0 if below is None else below + 1
    return earlier + new_rows, meta


def _record_end(conn, job_id, status, reason, message, error) -> None:
    if _connection_broken(conn):
        return  # the recovery on the next start marks it interrupted
    with conn.transaction():
        conn.execute(
            "UPDATE heimdall.generation_jobs SET status = %s, stopped_reason = %s, "
            "stop_message = %s, progress_message = %s, error = %s, finished_at = now(), "
            "heartbeat_at = now() WHERE id = %s",
            (status, reason, message, message, None if error is None else
             f"{type(error).__name__}: {error}", job_id))

