"""The generation pipeline: a producer thread making batches, two ingest lanes committing them.

The producer runs the kernel, consumes accepted attempts in attempt order and packs them into
binary COPY buffers, one batch ahead of the lanes. Two ingest lanes COPY consecutive batches on
two connections, so the database ingests batch k+1 while batch k commits; commits keep batch
order, and each carries its rows with the dataset's counters and the job's progress (C3).

A lane commits a batch only when, in the batch's own transaction and after the dataset's row is
locked by its UPDATE: the batch before it committed, the job was not stopped, no cancel was
recorded on the job row, and the job's loop still holds the dataset's writer lock. Otherwise the
batch rolls back, whole.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from heimdall_synth.kernel import REJECT_REASONS
from heimdall_synth.kernel.batch import AttemptBatch, pack_config, run_attempts
from heimdall_synth.kernel.splits import split_of
from heimdall_synth.service.engine.quality import QualityAggregates
from heimdall_synth.service.storage import locks
from heimdall_synth.service.storage.capture_rows import IQ_CAPTURES_SQL, pack_capture_rows
from heimdall_synth.service.storage.copy_rows import (COPY_SQL, IQ_COPY_SQL, CopyStopped,
                                                      copy_batch, pack_feature_rows,
                                                      row_data_bytes)
from heimdall_synth.service.storage.database import connect

AUTO_BATCH_ATTEMPTS = 50_000    # ~0.1 s of kernel, ~0.5 s of COPY here (bench/RESULTS.md)
FIRST_BATCH_ATTEMPTS = 8_192    # then x4 per batch up to the batch size
CHUNK_ATTEMPTS = 8_192          # the producer's unit of work within a batch
INGEST_STREAMS = 2              # connections COPYing batches side by side (commits in order)
#: iq_raw: complex IQ values (receivers x capture samples) the producer synthesizes at once,
#: 32 MB of complex64, and a batch is at most IQ_CHUNKS_PER_BATCH such chunks (about 1 s here):
#: memory stays bounded whatever the capture, and a cancel never waits long for the producer.
IQ_CHUNK_VALUES = 4 * 2**20
IQ_CHUNKS_PER_BATCH = 8


def chunk_attempts(cfg) -> int:
    """Attempts the producer runs at a time: CHUNK_ATTEMPTS, or for iq_raw as many as keep
    the chunk's IQ within IQ_CHUNK_VALUES (at least one)."""
    if not cfg.is_iq:
        return CHUNK_ATTEMPTS
    return int(min(CHUNK_ATTEMPTS, max(1, IQ_CHUNK_VALUES // (cfg.max_receivers
                                                              * cfg.iq_capture))))


def auto_batch_attempts(cfg) -> int:
    """The attempts of a batch when the job does not set batch_size."""
    return AUTO_BATCH_ATTEMPTS if not cfg.is_iq else chunk_attempts(cfg) * IQ_CHUNKS_PER_BATCH


def consume(batch: AttemptBatch, need: int, run_before: int, max_run: int):
    """How much of a batch the job consumes, in attempt order.

    Returns (rows to store, attempts consumed, stalled, rejected run after the consumed part):
    it takes accepted attempts until ``need`` are taken, and stops at the attempt that makes
    ``max_run`` rejections in a row (``run_before`` of them from earlier batches).
    """
    return consume_valid(batch.valid, need, run_before, max_run)


def consume_valid(valid: np.ndarray, need: int, run_before: int, max_run: int):
    """``consume`` on the attempts' validity flags alone."""
    n = len(valid)
    accepted = np.flatnonzero(valid)
    consumed = n if len(accepted) < need else int(accepted[need - 1]) + 1
    # Length of the rejected run ending at each attempt: position - last accepted position.
    positions = np.arange(n)
    last_accepted = np.maximum.accumulate(np.where(valid, positions, -1 - run_before))
    run = positions - last_accepted
    stall = np.flatnonzero(run[:consumed] >= max_run)
    stalled = stall.size > 0
    if stalled:
        consumed = int(stall[0]) + 1
    rows = accepted[accepted < consumed][:need]
    run_after = int(run[consumed - 1]) if consumed else run_before
    return rows, consumed, stalled, run_after


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
    copy_sql: str = COPY_SQL  # the COPY the buffer was packed for (iq_raw: IQ features too)
    captures: object = None   # iq_raw, postgres storage: its IQ captures' COPY data (a list)
    capture_rows: int = 0     # rows in captures


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
                 cursor, budget_left, need, run, max_run, first_sample, halted=None, gpu=None):
        self.cfg, self.seed, self.threads = cfg, seed, threads
        self.dataset_id, self.job_id, self.frequency_hz = dataset_id, job_id, frequency_hz
        self.batch_size, self.cursor, self.budget_left = batch_size, cursor, budget_left
        self.need, self.run, self.max_run, self.next_sample = need, run, max_run, first_sample
        # Packed on the first batch (the terrain's loss maps take a while), in the producer's
        # thread, so that a failure is the job's like any batch's.
        self.terrain = None
        self.inputs = self.buffer = None
        self.number = 0
        self.acceptance = 0.9  # running estimate, sizes the last batches (never the results)
        self.chunk = chunk_attempts(cfg)
        # Asked between chunks: when the job is stopping, the batch being made is dropped.
        self.halted = halted or (lambda: False)
        # kernel.gpu.device_info() of the CUDA device the attempts run on; None: the CPU
        self.gpu = gpu

    def next(self) -> PackedBatch | None:
        """The next batch, or None when the job needs nothing more or the budget is spent."""
        if self.need <= 0 or self.budget_left <= 0 or self.run >= self.max_run:
            return None
        lower_priority()
        t0 = time.perf_counter()
        if self.inputs is None:
            self.inputs = pack_config(self.cfg, self.seed, self.terrain)
            self.buffer = AttemptBatch.empty(self.chunk, self.inputs.max_receivers)
        # Size a batch for what is still needed, starting small so the first COPY starts at
        # once and the pipeline fills (results never depend on batch sizes: C4).
        wanted = int(self.need * 1.2 / max(self.acceptance, 0.02)) + 256
        first = FIRST_BATCH_ATTEMPTS if not self.cfg.is_iq else self.chunk
        ramp = first * 4 ** self.number
        count = min(self.batch_size, self.budget_left, ramp,
                    max(wanted, min(1024, self.batch_size)))
        first_attempt, first_sample = self.cursor, self.next_sample
        chunks, evaluated, valid, consumed, kept, stalled = [], 0, 0, 0, 0, False
        captures, capture_rows = [], 0
        rejections = np.zeros(len(REJECT_REASONS) + 1, np.int64)
        quality = QualityAggregates(None)
        while evaluated < count and self.need > 0 and not stalled:
            if self.halted():
                return None  # the job is stopping: this batch would never commit
            chunk = self.evaluate(min(self.chunk, count - evaluated))
            n = len(chunk.valid)
            take, used, stalled, self.run = consume_valid(chunk.valid, self.need, self.run,
                                                          self.max_run)
            if len(take):
                rows = chunk.rows_of(take)
                batch = chunk.batch
                features = None
                if self.cfg.is_iq:
                    features, iq_rows = self.signals(chunk, rows)
                    if iq_rows is not None:
                        captures.append(iq_rows)
                        capture_rows += int(batch.n_receivers[rows].sum())
                cfg = self.cfg
                split = split_of(batch.tx_latitude[rows], batch.tx_longitude[rows],
                                 cfg.split_cell_m, cfg.split_train, cfg.split_validation)
                chunks.append(pack_feature_rows(batch, self.dataset_id, self.next_sample,
                                                self.job_id, self.frequency_hz, rows=rows,
                                                iq_features=features, split=split))
                quality.add(QualityAggregates.partial(batch, rows))
            rejections += np.bincount(chunk.reject_reason[:used],
                                      minlength=len(REJECT_REASONS) + 1)
            valid += int(chunk.valid.sum())
            evaluated += n
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
                           first_sample, time.perf_counter() - t0,
                           IQ_COPY_SQL if self.cfg.is_iq else COPY_SQL, captures or None,
                           capture_rows)

    def progress(self) -> dict:
        """What the job's batch events add about where the work runs (nothing here)."""
        return {}

    def evaluate(self, n: int) -> "Evaluated":
        """The next n attempts from the cursor, evaluated (here: by the kernel, in this
        process; ``service.engine.cluster`` evaluates shards on a Dask cluster)."""
        if self.gpu is None:
            batch = run_attempts(self.cfg, self.seed, self.cursor, n, threads=self.threads,
                                 inputs=self.inputs, out=self.buffer)
        else:
            from heimdall_synth.kernel.gpu import run_attempts_gpu
            batch = run_attempts_gpu(self.cfg, self.seed, self.cursor, n, inputs=self.inputs,
                                     out=self.buffer)
        return Evaluated(batch.valid, batch.reject_reason, batch)

    def signals(self, chunk: "Evaluated", rows):
        """iq_raw: the features measured from the IQ of the accepted attempts ``rows`` of the
        chunk's batch (the samples from self.next_sample on) and, with postgres storage, their
        captures' COPY data. Returns (features, capture rows or None); the IQ is dropped here."""
        cfg = self.cfg
        if chunk.features is not None:  # measured where the chunk was evaluated
            x = chunk.iq[rows] if chunk.iq is not None else None
            features = chunk.features[rows]
        else:
            x, features = measure_signals(cfg, self.seed, chunk.batch, rows, self.threads,
                                          self.gpu)
        rows_out = None
        if cfg.iq_storage == "postgres":
            rows_out = pack_capture_rows(x, chunk.batch.n_receivers[rows], self.dataset_id,
                                         self.next_sample, cfg.iq_format)
        return features, rows_out


def measure_signals(cfg, seed: int, batch, rows, threads: int | None = None, gpu=None):
    """iq_raw: the IQ of the accepted attempts ``rows`` of ``batch`` and the features
    measured from it, on the CPU (``threads``) or the CUDA device (``gpu``): the producer's
    work, and a cluster worker's (service.engine.cluster)."""
    from heimdall_synth.kernel import iq, iq_features
    signal = (cfg.num_chunks, cfg.iq_sample_rate_hz, cfg.iq_duration_ms, cfg.bandwidth_hz,
              cfg.noise_floor_dbm)
    n_rx = batch.n_receivers[rows]
    windows, rate, bandwidth = cfg.num_chunks, cfg.iq_sample_rate_hz, cfg.bandwidth_hz
    if gpu is None:
        x = iq.synthesize(batch, rows, seed, *signal, fading=cfg.enable_fading, threads=threads)
        return x, iq_features.measure(x, n_rx, windows, rate, bandwidth, threads=threads)
    from heimdall_synth.kernel.gpu import measure_gpu, synthesize_gpu
    x = synthesize_gpu(batch, rows, seed, *signal, fading=cfg.enable_fading)
    return x, measure_gpu(x, n_rx, windows, rate, bandwidth)


@dataclass
class Evaluated:
    """A run of consecutive attempts, evaluated: every attempt's validity and rejection
    reason, and the rows a job may store. In this process ``batch`` holds every attempt; a
    shard evaluated elsewhere ships only its accepted attempts (``accepted_only``), with, for
    iq_raw, their features (and IQ, when it is stored) measured there."""

    valid: np.ndarray
    reject_reason: np.ndarray
    batch: AttemptBatch
    accepted_only: bool = False
    features: np.ndarray | None = None
    iq: np.ndarray | None = None

    def rows_of(self, take: np.ndarray) -> np.ndarray:
        """Rows of ``batch`` for the attempts at positions ``take`` (accepted ones)."""
        if not self.accepted_only:
            return take
        return np.searchsorted(np.flatnonzero(self.valid), take)


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


def default_job_threads(cfg=None) -> int:
    """Kernel threads for a job: all cores but one, which the database's COPY needs (on a
    2-core machine the kernel on one core still outruns PostgreSQL's ingest several times).
    An iq_raw job that stores no IQ is the other way round (the signals are the work, the
    database takes a few rows a second): all cores."""
    cores = os.cpu_count() or 2
    if cfg is not None and cfg.is_iq and cfg.iq_storage == "regenerate":
        return cores
    return max(1, cores - 1)


class BatchCountMismatch(RuntimeError):
    """A batch's rows in the table are not the rows it copied: it rolls back, the job fails."""


class BatchAborted(Exception):
    """A batch in flight is dropped because the one before it ended the job or failed."""


class BatchCancelled(BatchAborted):
    """A batch rolled back because a cancel was recorded on the job (row or in-process)."""


class LockLost(RuntimeError):
    """The job's loop no longer holds its dataset's writer lock: nothing more may be written."""


class StopRequest(threading.Event):
    """An in-process request to stop a job, with its reason: 'cancelled' (a user asked) or
    'interrupted' (the service is shutting down; the job is resumable)."""

    reason = "cancelled"

    def stop(self, reason: str) -> None:
        """Ask the job to stop; the first reason given is the one kept."""
        if not self.is_set():
            self.reason = reason
        self.set()


@dataclass
class JobStop:
    """What the lanes check before a commit: shared by every batch of one run."""

    job_id: str
    dataset_id: object
    lock_pid: int               # backend holding the dataset's writer lock for this job
    abort: threading.Event      # the loop stopped: drop every batch still in flight
    cancel: threading.Event     # an in-process cancel (Ctrl-C, the runner)

    def stopping(self) -> bool:
        return self.abort.is_set() or self.cancel.is_set()


class Lane:
    """One ingest stream: a connection and a thread that COPY a batch and then commit it.

    Two lanes let the database ingest batch k+1 on one backend while batch k commits on the
    other; a batch's counters are written and committed only after the batch before it has
    committed, so commits keep batch order and every one carries its rows and its counters
    together (C3). If the batch before failed, or the job stopped, the batch rolls back.
    """

    def __init__(self, url: str, number: int):
        self.conn = connect(url)
        self.pool = ThreadPoolExecutor(max_workers=1,
                                       thread_name_prefix=f"heimdall-ingest-{number}")

    def submit(self, packed, counters, previous, stop: JobStop):
        return self.pool.submit(commit_batch, self.conn, packed, counters, previous, stop)

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.conn.close()


def rows_in_range(cur, table: str, dataset_id, packed) -> int:
    """Rows of heimdall.``table`` (measurement_features or iq_captures) in the sample index
    range of batch ``packed``."""
    return cur.execute(
        f"SELECT count(*) FROM heimdall.{table} WHERE dataset_id = %s AND sample_index >= %s "
        "AND sample_index < %s",
        (dataset_id, packed.sample_offset, packed.sample_offset + packed.kept)).fetchone()[0]


def commit_batch(conn, packed, counters, previous, stop: JobStop):
    """COPY one batch, wait for the previous batch's commit, write the counters, commit.
    Returns (dataset total, COPY seconds, wait-counters-commit seconds).

    Raises (and so rolls the batch back) BatchAborted when the loop stopped or the batch before
    did not commit, BatchCancelled when a cancel was recorded, LockLost when the job's loop
    lost its dataset lock. The cancel flag is read in the UPDATE of the job's row: a cancel
    request waits for the row lock of a batch already committing, so after the request has
    committed no further batch can."""
    quality_json, rejections_json, msg = counters
    t0 = time.perf_counter()
    with conn.transaction():
        with conn.cursor() as cur:
            if packed.kept:
                try:
                    copy_batch(cur, packed.buffer, stop=stop.stopping, sql=packed.copy_sql)
                    if packed.captures is not None:  # the samples' IQ, in their transaction
                        copy_batch(cur, packed.captures, stop=stop.stopping, sql=IQ_CAPTURES_SQL)
                except CopyStopped:
                    raise (BatchCancelled() if stop.cancel.is_set() else BatchAborted()) from None
                # The table, not the COPY, says what this batch stored: its index range must
                # hold exactly its rows before it may commit (while the batch before commits).
                stored = rows_in_range(cur, "measurement_features", stop.dataset_id, packed)
                if stored != packed.kept:
                    raise BatchCountMismatch(
                        f"batch {packed.number} copied {packed.kept:,} samples (indices "
                        f"{packed.sample_offset:,}..{packed.sample_offset + packed.kept - 1:,}) "
                        f"but its range holds {stored:,} rows; it was rolled back")
                if packed.captures is not None:
                    stored = rows_in_range(cur, "iq_captures", stop.dataset_id, packed)
                    if stored != packed.capture_rows:
                        raise BatchCountMismatch(
                            f"batch {packed.number} copied {packed.capture_rows:,} IQ captures "
                            f"but its samples' range holds {stored:,}; it was rolled back")
            t_copied = time.perf_counter()
            if previous is not None:
                previous.result()  # raises when it failed or was aborted: this one rolls back
            if stop.abort.is_set():
                raise BatchAborted()
            if stop.cancel.is_set():
                raise BatchCancelled()
            # storage_size_bytes stays NULL (unknown) on a dataset made before it was kept.
            total = cur.execute(
                "UPDATE heimdall.synthetic_datasets SET num_samples = num_samples + %s, "
                "next_attempt_index = %s, quality_metrics = %s, "
                "storage_size_bytes = storage_size_bytes + %s, updated_at = now() "
                "WHERE id = %s RETURNING num_samples",
                (packed.kept, packed.first_attempt + packed.consumed, quality_json,
                 row_data_bytes(packed.buffer) + row_data_bytes(packed.captures),
                 stop.dataset_id)).fetchone()[0]
            # The dataset's row is locked now: no other job can write it before this commits.
            # Checked here, after that lock, so a lock lost at any moment before stops the batch.
            if not locks.held(cur, locks.dataset_key(stop.dataset_id), pid=stop.lock_pid,
                              exclusive=True):
                raise LockLost(f"the job's lock on dataset {stop.dataset_id} was lost (its lock "
                               "connection ended); this batch was rolled back and nothing after "
                               "the last committed batch was written")
            cancel_requested = cur.execute(
                "UPDATE heimdall.generation_jobs SET generated = generated + %s, "
                "attempted = attempted + %s, rejections = %s, consecutive_rejections = %s, "
                "progress_message = %s, heartbeat_at = now() WHERE id = %s "
                "RETURNING cancel_requested",
                (packed.kept, packed.consumed, rejections_json, packed.run_after, msg,
                 stop.job_id)).fetchone()[0]
            if cancel_requested:
                raise BatchCancelled()
    return total, t_copied - t0, time.perf_counter() - t_copied
