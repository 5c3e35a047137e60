"""The generation loop: a job's attempts, from its dataset's cursor, in batches, to the target.

Each batch: kernel -> binary COPY of the accepted samples it consumes -> dataset counters and
job progress -> ONE commit (contract C3). Accepted samples are consumed in attempt order, only
as many as the job still needs; the cursor moves to just after the last attempt consumed, so no
attempt is skipped or used twice and any split of a dataset into jobs writes the same rows (C4).
The work is a pipeline (``engine.pipeline``): a producer thread one batch ahead, two ingest
lanes committing in batch order.

A job's loop holds, on a connection of its own, the job's owner lock (shared: whoever owns the
job holds it, so a job whose process died is recognisable, C5) and its dataset's writer lock
(exclusive: two jobs on one dataset never interleave, C6; every batch checks it is still held
before it commits). Its status changes go through the job state machine (``engine.states``).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from typing import Callable

from psycopg.types.json import Jsonb

from heimdall_synth.kernel import REJECT_REASONS, GenerationConfig
from heimdall_synth.service.engine.request import NotFoundError
from heimdall_synth.service.engine import states
from heimdall_synth.service.engine.pipeline import (INGEST_STREAMS, auto_batch_attempts,
                                                    BatchCancelled, JobStop, Lane, Producer,
                                                    default_job_threads)
from heimdall_synth.service.engine.quality import QualityAggregates
from heimdall_synth.service.engine.stops import (UNSTARTED_MESSAGE, JobError, JobResult,
                                                 database_advice, progress_text, stop_message)
from heimdall_synth.service.storage import locks
from heimdall_synth.service.storage.database import connect

log = logging.getLogger("heimdall.generation")

QUEUE_POLL_S = 0.2


def _device(threads: int | None, gpu: dict | None = None) -> str:
    if gpu is not None:
        from heimdall_synth.kernel.gpu import device_text
        return device_text(gpu)
    import numba
    return f"cpu (numba {numba.__version__}, {threads or numba.get_num_threads()} threads)"


def _gpu_for(use_gpu, cfg) -> dict | None:
    """The CUDA device a job runs on (its attempts and, for iq_raw, its signals): none for
    false, the machine's (if any) for null, and for true the machine's or JobError (a job
    queued where there was one)."""
    if use_gpu is False:
        return None
    from heimdall_synth.kernel.gpu import device_info
    info = device_info()
    if use_gpu is True and info is None:
        raise JobError("use_gpu is true and this machine has no CUDA device (numba-cuda, a "
                       "driver and a device are needed); resume it where there is one, or "
                       "expand with use_gpu null or false")
    return info


def _job_cluster(stack, cluster: str | None, workers: int | None):
    """(the Dask client a job evaluates its attempts on, kept open by ``stack``, or None for
    in-process; the JobError saying why there is none: no distributed, no scheduler)."""
    if not (cluster or workers):
        return None, None
    from heimdall_synth.service.engine.cluster import cluster_client
    try:
        return stack.enter_context(cluster_client(cluster, workers)), None
    except Exception as exc:  # noqa: BLE001 - ImportError, OSError, timeouts: the job says it
        where = f"the Dask scheduler at {cluster}" if cluster else "a local Dask cluster"
        return None, JobError(f"{where} could not be used: {exc}")


def _on_cluster(client, use_gpu):
    """(the job's device on a Dask cluster, its producer class, the error that fails the job:
    a refused worker, or use_gpu true, since the workers run the kernel on their CPUs)."""
    from heimdall_synth.service.engine.cluster import ClusterError, ClusterProducer, check_workers
    address = client.scheduler.address
    try:
        workers = check_workers(client)
    except ClusterError as exc:
        return f"dask: {address}", None, JobError(str(exc))
    device = f"dask: {address} ({workers} worker{'' if workers == 1 else 's'})"
    made_by = functools.partial(ClusterProducer, client=client, workers=workers)
    if use_gpu is True:
        return device, made_by, JobError("use_gpu is true, and a job on a Dask cluster runs "
                                         "on its workers' CPUs; send null or false")
    return device, made_by, None


class _Events:
    """The job's events: kept, and passed to ``on_event``. A callback that raises (a closed
    stderr, a broken client) is logged and never reaches the job's bookkeeping."""

    def __init__(self, on_event: Callable[[dict], None] | None):
        self.kept: list[dict] = []
        self.on_event = on_event
        self.failed = False

    def __call__(self, event: dict) -> None:
        self.kept.append(event)
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # noqa: BLE001 - a listener's failure is not the job's
            if not self.failed:
                self.failed = True
                log.warning("a progress listener failed; the job goes on", exc_info=True)


def run_job(url: str, job_id, *, threads: int | None = None,
            cancel: threading.Event | None = None,
            on_event: Callable[[dict], None] | None = None, cluster: str | None = None,
            workers: int | None = None) -> JobResult:
    """Run (or resume) a job to its end; return its final record.

    Waits, as 'queued', while another job holds the dataset. ``cancel`` (in-process) and the
    job row's ``cancel_requested`` (any process) stop it: the batch being committed when the
    cancel is recorded is the last. A job that stops short (budget, stall) ends 'failed' with
    its stop reason and a message saying what to relax; it is returned, not raised. An error
    rolls back the open batch, records the job 'failed' with its committed counts and the
    error, and raises JobError. ``on_event`` receives status, progress, batch and final events.
    ``cluster`` (a Dask scheduler's address) or ``workers`` (a local cluster of that many
    processes) evaluates the attempts there (``service.engine.cluster``).
    """
    job_id = str(job_id)
    t0 = time.perf_counter()
    cancel = cancel if cancel is not None else threading.Event()
    emit = _Events(on_event)
    with ExitStack() as stack:  # every connection opened is closed, whichever open fails
        lock_conn = stack.enter_context(connect(url, autocommit=True))
        conn = stack.enter_context(connect(url))
        locks.hold_shared(lock_conn, locks.job_key(job_id))  # this process owns the job
        job = _load_job(conn, job_id)
        if job["status"] == "cancelled":
            return _finish_unstarted(conn, job, t0, emit)
        if job["status"] not in ("pending", "queued"):
            raise JobError(_not_startable(job_id, job["status"]))
        dataset_id = str(job["dataset_id"])
        writer_key = locks.dataset_key(dataset_id)
        if not locks.try_exclusive(lock_conn, writer_key):
            message = states.queued_message(_running_job(conn, dataset_id))
            with conn.transaction():
                states.transition(conn, job_id, "queued", expect="pending",
                                  progress_message=message)
            emit({"type": "status", "status": "queued", "job_id": job_id, "message": message})
            while not locks.try_exclusive(lock_conn, writer_key):
                if cancel.is_set() or _cancel_requested(conn, job_id):
                    return _finish_unstarted(conn, job, t0, emit, cancel)
                time.sleep(QUEUE_POLL_S)
        return _run_locked(url, conn, lock_conn.info.backend_pid, job_id, threads, cancel,
                           emit, t0, *_job_cluster(stack, cluster, workers))


def _event_reason(cancel) -> str:
    """Why an in-process stop stopped the job: 'cancelled' (Ctrl-C, a cancel), or the reason
    the event carries (``StopRequest``: 'interrupted' when a service shuts down)."""
    return getattr(cancel, "reason", "cancelled")


def _not_startable(job_id: str, status: str) -> str:
    if status == "completed":
        return f"job {job_id} is already completed"
    if status == "running":
        return f"job {job_id} is being run by another process"
    return (f"job {job_id} is {status}: resume it first (only interrupted, cancelled or failed "
            "jobs can be resumed)")


def _running_job(conn, dataset_id: str) -> str | None:
    with conn.transaction():
        row = conn.execute("SELECT id FROM heimdall.generation_jobs WHERE dataset_id = %s AND "
                           "status = 'running' LIMIT 1", (dataset_id,)).fetchone()
    return str(row[0]) if row else None


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


def _finish_unstarted(conn, job, t0, emit, cancel=None) -> JobResult:
    """A job stopped before it ran a batch (while pending or queued): cancelled, or
    interrupted when its service is shutting down (``StopRequest``)."""
    status = _event_reason(cancel) if cancel is not None and cancel.is_set() else "cancelled"
    message = UNSTARTED_MESSAGE[status]
    with conn.transaction():
        states.transition(conn, job["id"], status, expect=("pending", "queued"),
                          stopped_reason=status, stop_message=message,
                          progress_message=message)
    result = JobResult(str(job["id"]), status, status, job["requested"],
                       job["generated"], job["attempted"], job["samples_offset"] or 0, -1,
                       job["rejections"], message, "none", time.perf_counter() - t0, emit.kept)
    emit({"type": "final", **_result_event(result)})
    return result


def _result_event(r: JobResult) -> dict:
    return {"job_id": r.job_id, "status": r.status, "stopped_reason": r.stopped_reason,
            "requested": r.requested, "generated": r.generated, "attempted": r.attempted,
            "samples_offset": r.samples_offset, "final_count": r.final_count,
            "rejections": r.rejections, "message": r.message, "device": r.device,
            "duration_s": round(r.duration_s, 3),
            "samples_per_second": round(r.samples_per_second, 1)}


def _committed_rejections(conn, job_id, fallback: dict) -> dict:
    """The job's rejection counts as committed (batches made ahead may have rolled back)."""
    try:
        with conn.transaction():
            row = conn.execute("SELECT rejections FROM heimdall.generation_jobs WHERE id = %s",
                               (job_id,)).fetchone()
        return {k: int(row[0].get(k, 0)) for k in REJECT_REASONS} if row else fallback
    except Exception:  # noqa: BLE001 - the connection may be gone; _finish reports that
        return fallback


def _run_locked(url, conn, lock_pid, job_id, threads, cancel, emit, t0,
                client=None, cluster_error=None) -> JobResult:
    job = _load_job(conn, job_id)
    if job["status"] == "cancelled" or job["cancel_requested"] or cancel.is_set():
        return _finish_unstarted(conn, job, t0, emit, cancel)
    spec = job["config"]
    cfg = GenerationConfig.from_dict(spec["config"])
    seed, options = int(spec["seed"]), spec["options"]
    threads = threads or default_job_threads(cfg)
    try:  # the device the attempts run on; a refusal fails the job once it is running
        gpu, gpu_error = _gpu_for(options.get("use_gpu"), cfg), None
    except JobError as exc:
        gpu, gpu_error = None, exc
    device = _device(threads, gpu)
    made_by = Producer
    if cluster_error is not None:  # no cluster to run on: the job fails saying why
        gpu, device, gpu_error = None, "dask (unreachable)", cluster_error
    elif client is not None:  # the attempts run on the cluster's workers (their CPUs)
        gpu = None
        device, made_by, gpu_error = _on_cluster(client, options.get("use_gpu"))
        made_by = made_by or Producer  # a refused cluster: the job fails before producing
    with conn.transaction():
        ds = conn.execute(
            "SELECT num_samples, next_attempt_index, quality_metrics FROM "
            "heimdall.synthetic_datasets WHERE id = %s FOR UPDATE", (job["dataset_id"],)).fetchone()
        num_samples, cursor, metrics = ds
        offset = job["samples_offset"] if job["samples_offset"] is not None else num_samples
        if states.transition(conn, job_id, "running", expect=("pending", "queued"),
                             samples_offset=offset, device=device, error=None,
                             stopped_reason=None, stop_message=None) is None:
            raise JobError(_not_startable(job_id, _load_job(conn, job_id)["status"]))
    requested = int(job["requested"])
    generated, attempted = int(job["generated"]), int(job["attempted"])
    run_start = generated
    rejections = {k: int(job["rejections"].get(k, 0)) for k in REJECT_REASONS}
    max_attempts = int(options["max_attempts"])
    max_run = int(options["max_consecutive_rejections"])
    batch_size = int(options["batch_size"] or auto_batch_attempts(cfg))
    quality = QualityAggregates(metrics)
    dataset_id = uuid.UUID(str(job["dataset_id"]))

    if job["kind"] == "expand":
        log.info("Expanding dataset %s (current samples: %d)", dataset_id, num_samples)
    log.debug("[GENERATION DEBUG] Target: %d valid samples, max attempts: %d",
              requested, max_attempts)
    log.debug("[GENERATION DEBUG] Batch size: %d attempts, device: %s", batch_size, device)
    emit({"type": "progress", "job_id": job_id, "status": "running",
          "message": progress_text(offset, generated, requested), "generated": generated,
          "requested": requested, "samples_offset": offset, "committed_count": num_samples,
          "device": device})

    producer = made_by(cfg, seed, threads, dataset_id, uuid.UUID(job_id), cfg.frequency_mhz * 1e6,
                       batch_size, cursor, max_attempts - attempted, requested - generated,
                       int(job["consecutive_rejections"]), max_run, offset + generated,
                       gpu=gpu)
    reason = error = None
    exhausted = False
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="heimdall-producer")
    lanes: list[Lane] = []
    inflight: deque = deque()
    stop = JobStop(job_id, dataset_id, lock_pid, threading.Event(), cancel)
    producer.halted = stop.stopping
    pending = previous = None

    def committed(packed, total, msg, cumulative, t_copy, t_commit):
        """Count a batch that committed, then report it; returns (generated, attempted)."""
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
              "rate": (new_generated - run_start) / max(time.perf_counter() - t0, 1e-9),
              **producer.progress()})
        return new_generated, new_attempted

    try:
        if gpu_error is not None:
            raise gpu_error
        producer.terrain = _job_terrain(conn, cfg, spec.get("terrain_sha256"))
        if offset + generated != num_samples:
            raise JobError(
                f"dataset {dataset_id} holds {num_samples:,} samples but this job would continue"
                f" at {offset + generated:,}: another job wrote to it since; start a new "
                f"expansion for the {requested - generated:,} samples still wanted")
        for number in range(INGEST_STREAMS):
            lanes.append(Lane(url, number))  # appended one by one: a failed connect leaks none
        pending = pool.submit(producer.next)
        submitted_generated = generated
        while True:
            # Keep every lane busy: COPY batch k+1 while batch k commits (in order).
            if not exhausted and len(inflight) < len(lanes) and not cancel.is_set():
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
                previous = lane.submit(packed, counters, previous, stop)
                inflight.append((packed, previous, counters[2], dict(rejections)))
                continue
            if not inflight:
                break
            packed, done, msg, cumulative = inflight.popleft()
            try:
                total, t_copy, t_commit = done.result()
            except BatchCancelled:
                reason = _event_reason(cancel) if cancel.is_set() else "cancelled"
                break
            generated, attempted = committed(packed, total, msg, cumulative, t_copy, t_commit)
            if packed.stalled:
                reason = "stalled"
                break
        if reason is None:
            reason = (_event_reason(cancel) if cancel.is_set() and generated < requested else
                      "target_reached" if generated >= requested else
                      "stalled" if producer.run >= max_run else "max_attempts")
    except BaseException as exc:  # the open batches roll back with their transactions
        reason, error = "failed", exc
    finally:
        stop.abort.set()  # a batch still in flight rolls back instead of committing ...
        for packed, done, msg, cumulative in inflight:
            try:
                total, t_copy, t_commit = done.result()
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
                   generated, attempted, rejections, device, t0, emit)


def _finish(conn, job, job_id, reason, error, cfg, options, offset, requested, generated,
            attempted, rejections, device, t0, emit) -> JobResult:
    """Reconcile the counts with the table, record the job's final state, report."""
    dataset_id = job["dataset_id"]
    log.debug("[GENERATION COMPLETE DEBUG] generated=%d attempted=%d stopped_reason=%s",
              generated, attempted, reason)
    if conn.info.transaction_status != 0:  # the failed batch's transaction is still open
        conn.rollback()
    final_count = -1
    if reason != "failed" or not _connection_broken(conn):
        try:
            final_count, meta_count = _final_count(conn, dataset_id)
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
    status = {"target_reached": "completed", "cancelled": "cancelled",
              "interrupted": "interrupted"}.get(reason, "failed")
    message = stop_message(reason, generated, requested, attempted, rejections, cfg, options)
    if error is not None:
        message += (f" Error: {type(error).__name__}: {str(error).rstrip().rstrip('.')}."
                    + database_advice(error))
    duration = time.perf_counter() - t0
    result = JobResult(job_id, status, reason, requested, generated, attempted, offset,
                       final_count, rejections, message, device, duration, emit.kept,
                       generated - int(job["generated"]))
    if not _connection_broken(conn):  # else the recovery on the next start marks it interrupted
        with conn.transaction():
            states.transition(conn, job_id, status, expect="running", stopped_reason=reason,
                              stop_message=message, progress_message=message,
                              error=None if error is None else f"{type(error).__name__}: {error}")
    emit({"type": "final", **_result_event(result)})
    if error is not None:
        log.error("Job %s failed: %s", job_id, message)
        raise JobError(message) from (error if isinstance(error, Exception) else None)
    return result


def _job_terrain(conn, cfg, sha256):
    """The grid of the job's terrain (None without one), as the job was created with it."""
    if cfg.terrain is None:
        return None
    from heimdall_synth.service.storage.terrains import get_terrain
    try:
        grid = get_terrain(conn, cfg.terrain)
    except NotFoundError:
        raise JobError(f"terrain {cfg.terrain!r} is no longer registered: register the same "
                       "grid again and resume the job") from None
    if sha256 is not None and grid.sha256() != sha256:
        raise JobError(f"terrain {cfg.terrain!r} was replaced since the job was created (its "
                       "SHA-256 differs); register the grid the dataset was made with")
    return grid


def _connection_broken(conn) -> bool:
    return conn.closed or conn.broken


def _final_count(conn, dataset_id) -> tuple[int, int]:
    """(actual rows, the dataset's num_samples). Every batch of every job counted its own index
    range in its transaction before it committed (pipeline.commit_batch), and indices are
    unique and start at 0, so the rows are complete up to the highest index: that index + 1
    equals COUNT(*), read in O(log n) (`validate` and the dataset views do the full COUNT)."""
    with conn.transaction():
        meta = conn.execute("SELECT num_samples FROM heimdall.synthetic_datasets WHERE id = %s",
                            (dataset_id,)).fetchone()[0]
        top = conn.execute(
            "SELECT max(sample_index) FROM heimdall.measurement_features WHERE dataset_id = %s",
            (dataset_id,)).fetchone()[0]
    return (0 if top is None else top + 1), meta
