"""A job's attempts evaluated on a Dask distributed cluster (the ``distributed`` extra).

Every attempt is a pure function of (seed, attempt index), so the work splits without shared
random state. The job's coordinator (the process running ``run_job``) keeps everything that
makes the contracts hold: it consumes attempts in attempt order, packs the rows and commits
each batch with the dataset's counters and the job's progress in one transaction, exactly as
in-process. Only the evaluation moves:

* the coordinator cuts the attempts from the cursor on into shards (the producer's chunk:
  8,192 attempts, or for iq_raw as many as hold 32 MB of IQ, about a second of signals per
  shard at the default settings; at most the job's batch size) that never cross the job's
  attempt budget, and keeps ``SHARDS_PER_WORKER`` per worker in flight;
* a worker evaluates a shard: the attempt kernel, and for iq_raw the signals of every accepted
  attempt (synthesis and features; the IQ itself only when it is stored), and ships back the
  validity flags, rejection reasons and accepted rows;
* the coordinator takes the results in shard order, so the rows it stores are exactly an
  in-process run's. Near the target it sends no shard beyond the attempts the remaining
  samples should take; shards evaluated past the target are dropped.

Workers never touch the database: they need the project installed, not the database URL. A
worker killed mid-shard loses nothing: the scheduler runs the shard again elsewhere and the
result is the same; when the job's inputs died with their workers, the coordinator sends them
and the waiting shards again. A coordinator killed mid-job leaves its last committed batch and
nothing after it, and the job is resumed like any interrupted job. A worker whose model
version or project version differs from the coordinator's is refused before any of its
results is used.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import socket
import threading
from collections import deque
from concurrent.futures import CancelledError
from importlib import metadata

import numpy as np

from heimdall_synth.kernel.defaults import MODEL_VERSION
from heimdall_synth.service.engine.pipeline import Evaluated, Producer, measure_signals

log = logging.getLogger("heimdall.generation")

#: Shards in flight per worker: one running and two waiting, so a worker never idles between
#: two while the coordinator takes results in order (bench/cluster.py: 2 was a few % slower).
SHARDS_PER_WORKER = 3
#: How far past the attempts the remaining samples should take (at the running acceptance)
#: shards are sent ahead: a margin for the acceptance's spread.
HORIZON = 1.1


#: Times in a row the coordinator sends the job's inputs again after the cluster lost them,
#: before the job fails saying so. Dask keeps one copy of scattered data (its active memory
#: manager drops the broadcast's extra replicas), so a worker killed while it held that copy
#: takes the inputs with it, and every shard waiting on them is cancelled.
RESENDS = 3


#: Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which turns off glibc's dynamic
#: mmap threshold: every array over 128 KiB is then mapped and unmapped anew, and the signals
#: (about a megabyte of scratch a sample) ran 1.7 times slower. Local clusters unset it;
#: docs/CLUSTER.md says how to unset it on an existing cluster's workers.
WORKER_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


#: A local scheduler sends each worker its next shards ahead (Dask's default queues such
#: tasks on the scheduler until a worker is idle, a round trip per shard).
SATURATION = "distributed.scheduler.worker-saturation"


class ClusterError(RuntimeError):
    """The cluster cannot run the job (no workers, a refused worker, no distributed)."""


@functools.cache
def versions() -> dict:
    """What a worker and its coordinator must agree on (read once per process)."""
    try:
        project = metadata.version("heimdall-synth")
    except metadata.PackageNotFoundError:
        project = "unknown"
    return {"model_version": MODEL_VERSION, "project_version": project}


def reported_versions() -> dict:
    """``versions`` as a worker reports it (sent by reference: the worker runs its own)."""
    return versions()


def distributed_module():
    """dask.distributed, or ClusterError naming the extra."""
    try:
        import distributed
    except ImportError:
        raise ClusterError("running a job on a Dask cluster needs the distributed extra: "
                           "pip install 'heimdall-synth[distributed]'") from None
    return distributed


@contextlib.contextmanager
def cluster_client(address: str | None = None, workers: int | None = None):
    """A Dask client: on the scheduler at ``address``, or on a local cluster of ``workers``
    single-threaded worker processes (started here and stopped on exit)."""
    distributed = distributed_module()
    if address:
        refuse_early(address)
        client = distributed.Client(address, timeout="10s")
        try:
            yield client
        finally:
            client.close()
        return
    import dask
    with dask.config.set({WORKER_MALLOC_TRIM: None, SATURATION: "inf"}), \
            distributed.LocalCluster(n_workers=int(workers or 1), threads_per_worker=1,
                                     processes=True, dashboard_address=":0") as local, \
            distributed.Client(local) as client:
        yield client


def refuse_early(address: str) -> None:
    """ConnectionRefusedError at once when nothing listens at a tcp:// scheduler address (Dask's
    client retries a refused connection until its 10 s timeout); other addresses and other
    errors are left to the client."""
    from distributed.comm.addressing import parse_address, parse_host_port
    scheme, location = parse_address(address)
    if scheme != "tcp":
        return
    try:
        with socket.create_connection(parse_host_port(location), timeout=5):
            pass
    except ConnectionRefusedError:
        raise ConnectionRefusedError(f"nothing listens at {address} (connection refused)") \
            from None
    except OSError:
        pass  # unresolved or slow: the client says so, after its timeout


# ---------------------------------------------------------------------------- on a worker

#: The worker's packed kernel inputs, by job spec (one job's at a time, the latest).
_INPUTS: dict = {}
_INPUTS_LOCK = threading.Lock()


def evaluate_shard(spec: dict, start: int, count: int) -> dict:
    """On a worker: attempts start .. start + count - 1 of the job ``spec`` (config, seed,
    terrain grid, expected versions), evaluated. Refuses (ClusterError) when this worker's
    versions differ from the coordinator's, before evaluating anything."""
    mine = versions()
    if mine != spec["versions"]:
        raise ClusterError(f"worker versions {mine} differ from the coordinator's "
                           f"{spec['versions']}")
    from heimdall_synth.kernel.batch import pack_config, run_attempts
    from heimdall_synth.kernel.config import GenerationConfig
    cfg = GenerationConfig.from_dict(spec["config"])
    key = spec["key"]
    with _INPUTS_LOCK:
        if key not in _INPUTS:
            _INPUTS.clear()
            _INPUTS[key] = pack_config(cfg, spec["seed"], spec["terrain"])
        inputs = _INPUTS[key]
    batch = run_attempts(cfg, spec["seed"], start, count, threads=1, inputs=inputs)
    accepted = np.flatnonzero(batch.valid)
    out = {"valid": batch.valid.copy(), "reject_reason": batch.reject_reason.copy(),
           "rows": {k: getattr(batch, k)[accepted] for k in batch.ARRAYS},
           "features": None, "iq": None, "versions": mine}
    if cfg.is_iq and len(accepted):
        x, out["features"] = measure_signals(cfg, spec["seed"], batch, accepted, threads=1)
        if cfg.iq_storage == "postgres":
            out["iq"] = x
    return out


# ----------------------------------------------------------------------- on the coordinator

def check_workers(client) -> int:
    """The number of workers, after checking each one's versions (ClusterError otherwise)."""
    mine = versions()
    found = client.run(reported_versions)
    if not found:
        raise ClusterError("the Dask cluster has no workers")
    for address, theirs in sorted(found.items()):
        if theirs != mine:
            raise ClusterError(f"worker {address} runs {theirs}, the coordinator {mine}: "
                               "install the same project version on every worker")
    return len(found)


class ClusterProducer(Producer):
    """The producer, with its attempts evaluated on a Dask cluster (module docstring)."""

    def __init__(self, *args, client, workers: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.client = client
        self.workers = workers  # connected, their versions checked (check_workers)
        self.expected = versions()
        self.inflight: deque = deque()  # (start, count, future), in attempt order
        self.spec = None
        self.shards_done = 0
        self.round = 0  # shards sent again get new keys: a cancelled key may linger a while

    def start(self) -> None:
        """Send the workers the job's inputs: before the first shard, and again when the
        cluster lost them (result_of_first)."""
        spec = {"config": self.cfg.to_dict(), "seed": self.seed, "terrain": self.terrain,
                "versions": self.expected,
                "key": f"{self.job_id}:{self.seed}:{self.cfg.to_json()}"}
        # hash=False: new keys each time, so inputs sent again never meet their lost copies
        self.spec = self.client.scatter(spec, broadcast=True, hash=False)

    def evaluate(self, n: int) -> Evaluated:
        if self.spec is None:
            self.start()
        if self.inflight and self.inflight[0][0] != self.cursor:
            self.drop()  # the cursor moved otherwise than shard by shard: start again there
        result = self.result_of_first()
        self.fill()
        self.shards_done += 1
        if result["versions"] != self.expected:  # a worker that joined after the check
            raise ClusterError(f"a worker runs {result['versions']}, the coordinator "
                               f"{self.expected}")
        from heimdall_synth.kernel.batch import AttemptBatch
        return Evaluated(result["valid"], result["reject_reason"],
                         AttemptBatch(**result["rows"]), accepted_only=True,
                         features=result["features"], iq=result["iq"])

    def result_of_first(self) -> dict:
        """The first shard in flight, evaluated (taken off the queue). When the cluster lost
        the job's inputs (the workers that held them died), the shards waiting on them are
        cancelled: send the inputs again and the shards from the first on (they are pure
        functions of their attempt range), at most RESENDS times in a row."""
        resent = 0
        while True:
            self.fill()
            try:
                result = self.inflight[0][2].result()
            except CancelledError as exc:
                resent += 1
                if resent > RESENDS:
                    raise ClusterError(f"the cluster lost the job's inputs {resent} times in "
                                       f"a row (its workers died): {exc}") from exc
                log.warning("job %s: the cluster lost its inputs (the workers that held them "
                            "died): sending them again with the shards from attempt %d on",
                            self.job_id, self.inflight[0][0])
                self.drop()
                self.start()
                continue
            self.inflight.popleft()
            return result

    def fill(self) -> None:
        """Keep SHARDS_PER_WORKER shards per worker in flight, from the cursor on, within the
        job's attempt budget and, beyond the first, within the attempts the samples still
        needed should take (HORIZON x need / acceptance): near the target, shards that would
        be dropped are not evaluated."""
        end = self.cursor + self.budget_left
        horizon = self.cursor + int(HORIZON * self.need / max(self.acceptance, 0.02)) + 1
        nxt = self.inflight[-1][0] + self.inflight[-1][1] if self.inflight else self.cursor
        while (len(self.inflight) < SHARDS_PER_WORKER * max(self.workers, 1) and nxt < end
               and (not self.inflight or nxt < horizon)):
            count = min(self.chunk, self.batch_size, end - nxt)
            key = f"shard-{self.job_id}-{self.round}-{nxt}-{count}"
            future = self.client.submit(evaluate_shard, self.spec, nxt, count, pure=False,
                                        retries=3, key=key)
            self.inflight.append((nxt, count, future))
            nxt += count

    def drop(self) -> None:
        """Cancel the shards in flight (the job is done with them)."""
        futures = [f for _, _, f in self.inflight]
        self.inflight.clear()
        self.round += 1
        if futures:
            self.client.cancel(futures)

    def progress(self) -> dict:
        """What the job's events report about the cluster."""
        return {"workers": self.workers, "shards_done": self.shards_done}
