"""Concurrency and load (issue 5) against the real server over HTTP: a ``serve()`` process with
its production thread and stream limits, on the embedded PostgreSQL.

The load: several jobs started at once (three or more expansions of ONE dataset, a creation and
expansions of others) while client threads poll ``GET /jobs/{id}``, ``GET /datasets/{id}`` and
``GET /datasets`` and hold event streams open to the end. Every response's status and latency
is recorded. It must hold that: no 5xx and no transport error (30 s timeout); every job
completed; per dataset ``num_samples == COUNT(*) ==`` the initial count plus its expansions,
``sample_index`` dense and unique; each stream ended with exactly one ``final`` event matching
the job row; the jobs of one dataset ran one after another (C6: each one's ``samples_offset``
is the previous one's committed end, and it started after the previous one finished); and the
rows are what a serial run writes (C4: the same requests replayed one after another, in the
order they ran, in a fresh database, by ``run_job`` in this process; every data column of
every row compared). Latency percentiles are printed, never asserted (project rule).

The bounded version runs in CI; ``pytest -m slow tests/test_load.py -s`` runs the soak and
prints its figures (into $HEIMDALL_SYNTH_SOAK_RESULTS too, when set); ``python bench/soak.py
--record`` runs it and records them in docs/RELIABILITY.md. The capacity tests pin the fixes this suite drove:
open event streams at their limit leave the status endpoint answering, are refused beyond it
with 503 and Retry-After, and cost one database connection (service/http/events.py; a lost
reader connection ends them with an ``error`` event); requests beyond the request slots wait
without a connection (service/http/server.py); and a job waiting for its dataset leaves the workers
to other datasets (service/engine/runner.py). Each was seen to fail with its fix taken out.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import psycopg
import pytest

from heimdall_synth.service.storage.database import connect
from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.storage.locks import dataset_key
from heimdall_synth.service.storage.migrations import upgrade
from heimdall_synth.service.http.common import DATASET_READ_CONNECTIONS, REQUEST_CONNECTIONS
from heimdall_synth.service.http.server import MAX_EVENT_STREAMS
from tests.helpers import new_database, publish_soak_figures, row_digests, submit, url_counts
from tests.http_client import API, Client, ServerProcess, read_sse, start_server

TRANSPORT_TIMEOUT_S = 30   # a request not answered by then is a failure, not a latency


# ---- the load -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Plan:
    """``bases``: datasets created (and completed) before the load, name -> samples.
    ``jobs``: started at once during the load, (dataset name, num_samples, batch_size); the
    first job of a name not in ``bases`` creates it. Clients: ``pollers`` threads polling every
    ``poll_every_s`` and ``streamers`` threads each holding one event stream at a time."""
    bases: dict
    jobs: tuple
    pollers: int
    streamers: int
    poll_every_s: float
    workers: int = 2

    def seed(self, name: str) -> int:
        return 1000 + sorted({n for n, *_ in self.jobs} | set(self.bases)).index(name)


CI_PLAN = Plan(
    bases={"alpha": 5, "beta": 2000},
    jobs=(("alpha", 20_000, 1000), ("alpha", 15_000, 2000), ("alpha", 10_000, 500),
          ("beta", 20_000, 1000), ("gamma", 20_000, 1000), ("gamma", 10_000, 700)),
    pollers=20, streamers=10, poll_every_s=0.1)

SOAK_PLAN = Plan(
    bases={"alpha": 5, "beta": 1000, "delta": 3000},
    jobs=(("alpha", 60_000, 2000), ("alpha", 40_000, 1000), ("alpha", 30_000, 4000),
          ("alpha", 20_000, 500), ("beta", 50_000, 2000), ("beta", 30_000, 1500),
          ("gamma", 50_000, 2000), ("gamma", 30_000, 1000), ("delta", 40_000, 2000),
          ("epsilon", 40_000, 1000)),
    pollers=60, streamers=40, poll_every_s=0.25, workers=4)


@dataclass
class Record:
    kind: str               # status (GET /jobs/{id}), dataset, datasets, stream (its opening)
    status: int | None      # None: a transport error
    seconds: float
    error: str | None = None


@dataclass
class Stream:
    job_id: str
    status: int | None
    open_s: float
    events: list = field(default_factory=list)   # (name, data)
    error: str | None = None
    headers: object = None


class Board:
    """What the client threads share: what to poll, what they recorded, when to stop."""

    def __init__(self, jobs: list[str], datasets: list[str]):
        self.jobs, self.datasets = jobs, datasets
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.records: list[Record] = []
        self.streams: list[Stream] = []
        self.ended: set[str] = set()
        self.open_streams = self.max_open_streams = 0

    def add(self, record: Record) -> None:
        with self.lock:
            self.records.append(record)

    def stream_opened(self, delta: int) -> None:
        with self.lock:
            self.open_streams += delta
            self.max_open_streams = max(self.max_open_streams, self.open_streams)


def _poller(base: str, board: Board, index: int, every: float) -> None:
    client, k = Client(base), index
    while not board.done.is_set():
        kind = ("status", "status", "dataset", "status", "status", "datasets")[k % 6]
        path = {"status": f"/jobs/{board.jobs[k % len(board.jobs)]}",
                "dataset": f"/datasets/{board.datasets[k % len(board.datasets)]}",
                "datasets": "/datasets"}[kind]
        t0 = time.perf_counter()
        try:
            reply = client.get(path, timeout=TRANSPORT_TIMEOUT_S)
            board.add(Record(kind, reply.status, time.perf_counter() - t0))
        except (OSError, http.client.HTTPException) as exc:
            board.add(Record(kind, None, time.perf_counter() - t0, repr(exc)))
        k += 1
        board.done.wait(every)


def read_stream(client: Client, job_id: str, board: Board | None = None,
                limit: int | None = None) -> Stream:
    """GET /jobs/{id}/events read to its end, or its first ``limit`` events; a refusal's body
    is kept as ``error``."""
    conn = http.client.HTTPConnection(client.host, client.port, timeout=TRANSPORT_TIMEOUT_S)
    t0 = time.perf_counter()
    stream = Stream(job_id, None, 0.0)
    try:
        conn.request("GET", f"{API}/jobs/{job_id}/events")
        resp = conn.getresponse()
        stream.status, stream.open_s = resp.status, time.perf_counter() - t0
        stream.headers = resp.headers
        if resp.status != 200:
            stream.error = resp.read().decode(errors="replace")
            return stream
        if board is not None:
            board.stream_opened(+1)
        try:
            stream.events = _sse_events(resp, limit)
        finally:
            if board is not None:
                board.stream_opened(-1)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        stream.error = repr(exc)
    finally:
        conn.close()
    return stream


def _sse_events(resp, limit: int | None = None) -> list[tuple[str, dict]]:
    """Events of an open stream until it ends (or ``limit`` events have come)."""
    return [(name, data) for _, name, data in read_sse(resp, limit)]


def _streamer(base: str, board: Board, index: int) -> None:
    client, k = Client(base), index
    while not board.done.is_set():
        active = [j for j in board.jobs if j not in board.ended]
        if not active:
            return
        job_id = active[k % len(active)]
        k += 1
        stream = read_stream(client, job_id, board)
        board.add(Record("stream", stream.status, stream.open_s,
                         stream.error if stream.status is None else None))
        with board.lock:
            board.streams.append(stream)
            if stream.events and stream.events[-1][0] == "final":
                board.ended.add(job_id)
        if stream.error is not None:
            board.done.wait(0.5)


def _monitor(db_url: str, job_ids: list[str], board: Board, peaks: dict) -> None:
    """Samples, every 0.2 s, the jobs held (active) and PostgreSQL's connections."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        while not board.done.wait(0.2):
            held, running, backends = conn.execute(
                "SELECT count(*) FILTER (WHERE status IN ('pending', 'queued', 'running')), "
                "count(*) FILTER (WHERE status = 'running'), "
                "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') "
                "FROM heimdall.generation_jobs WHERE id = ANY(%s::uuid[])",
                (job_ids,)).fetchone()
            for key, value in (("held", held), ("running", running), ("backends", backends)):
                peaks[key] = max(peaks.get(key, 0), value)


def _post_at_once(client: Client, requests: list[dict]) -> list[dict]:
    """POST /generate for every request from its own thread, released together."""
    replies: list = [None] * len(requests)
    gate = threading.Barrier(len(requests))

    def post(i):
        gate.wait()
        replies[i] = client.post("/generate", requests[i], timeout=TRANSPORT_TIMEOUT_S)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None and r.status == 202 for r in replies), replies
    return [r.json for r in replies]


def percentiles(seconds: list[float]) -> dict:
    values = np.asarray(seconds) * 1000.0
    return {"n": len(values), "p50": float(np.percentile(values, 50)),
            "p99": float(np.percentile(values, 99)), "max": float(values.max())}


def run_load(db_url: str, pg_server_url: str, log_path, plan: Plan) -> dict:
    srv = ServerProcess(db_url, log_path, workers=plan.workers)
    try:
        api = srv.client
        datasets, requests_of = {}, {}   # name -> dataset id; job id -> (name, request)
        for name, n in plan.bases.items():
            request = {"name": name, "num_samples": n, "seed": plan.seed(name)}
            created = api.generate(**request)
            datasets[name], requests_of[created["job_id"]] = created["dataset_id"], (name, request)
        for job_id in list(requests_of):
            assert api.wait(job_id)["status"] == "completed"

        # the load: creations first (their expansions need the id), then every expansion
        first_of: dict = {}
        for i, (name, *_) in enumerate(plan.jobs):
            if name not in plan.bases:
                first_of.setdefault(name, i)
        creations = [plan.jobs[i] for i in first_of.values()]
        expansions = [j for i, j in enumerate(plan.jobs) if i not in first_of.values()]
        t_start = time.perf_counter()
        load_jobs: list[str] = []
        for batch in (creations, expansions):
            requests = [({"name": name, "seed": plan.seed(name)} if name not in datasets else
                         {"expand_dataset_id": datasets[name]})
                        | {"num_samples": n, "batch_size": batch_size}
                        for name, n, batch_size in batch]
            for (name, *_), request, reply in zip(batch, requests,
                                                  _post_at_once(api, requests) if batch else []):
                datasets.setdefault(name, reply["dataset_id"])
                requests_of[reply["job_id"]] = (name, request)
                load_jobs.append(reply["job_id"])

        board = Board(load_jobs, list(datasets.values()))
        peaks: dict = {}
        clients = [threading.Thread(target=_poller, args=(api.base, board, i, plan.poll_every_s))
                   for i in range(plan.pollers)]
        clients += [threading.Thread(target=_streamer, args=(api.base, board, i))
                    for i in range(plan.streamers)]
        clients.append(threading.Thread(target=_monitor, args=(db_url, load_jobs, board, peaks)))
        for t in clients:
            t.start()
        try:
            finals = {job_id: api.wait(job_id, timeout=1200, every=0.5) for job_id in load_jobs}
            t_load = time.perf_counter() - t_start
        finally:
            board.done.set()
            for t in clients:
                t.join(TRANSPORT_TIMEOUT_S + 10)
        assert not any(t.is_alive() for t in clients), "a client thread did not end"

        # ---- what the clients saw
        errors = [r for r in board.records if r.status is None]
        server_errors = [r for r in board.records if r.status is not None and r.status >= 500]
        assert not errors, f"{len(errors)} transport errors, e.g. {errors[:3]}"
        assert not server_errors, f"{len(server_errors)} 5xx, e.g. {server_errors[:3]}"
        assert all(r.status == 200 for r in board.records), \
            {r.status for r in board.records}
        assert len(board.streams) >= plan.streamers
        for stream in board.streams:
            names = [name for name, _ in stream.events]
            assert stream.error is None and names.count("final") == 1 and names[-1] == "final", \
                (stream.job_id, stream.error, names[-5:])
            final, job = stream.events[-1][1], finals[stream.job_id]
            for key in ("status", "requested", "generated", "attempted", "samples_offset",
                        "committed_count", "progress", "finished_at"):
                assert final[key] == job[key], (key, final[key], job[key])

        # ---- every job completed, exactly; counts agree; indices dense and unique
        all_jobs = {job_id: api.job(job_id) for job_id in requests_of}
        for job_id, job in all_jobs.items():
            assert (job["status"], job["generated"]) == ("completed", job["requested"]), job
        rows_verified = 0
        order: dict[str, list[str]] = {}
        for name, dataset_id in datasets.items():
            mine = sorted((j for j in all_jobs.values() if j["dataset_id"] == dataset_id),
                          key=lambda j: j["samples_offset"])
            order[name] = [j["id"] for j in mine]
            total = plan.bases.get(name, 0) + sum(n for d, n, _ in plan.jobs if d == name)
            assert url_counts(db_url, dataset_id) == (total, total), name
            assert sum(j["generated"] for j in mine) == total
            with psycopg.connect(db_url, autocommit=True) as conn:
                n, lo, hi, distinct = conn.execute(
                    "SELECT count(*), min(sample_index), max(sample_index), "
                    "count(DISTINCT sample_index) FROM heimdall.measurement_features "
                    "WHERE dataset_id = %s", (dataset_id,)).fetchone()
            assert (n, lo, hi, distinct) == (total, 0, total - 1, total), name
            assert api.get(f"/datasets/{dataset_id}/validate").json["ok"] is True
            # C6: one after another, each starting where the previous one's rows end
            assert mine[0]["samples_offset"] == 0
            for before, after in zip(mine, mine[1:]):
                assert after["samples_offset"] == before["samples_offset"] + before["generated"]
                assert (dt.datetime.fromisoformat(after["started_at"])
                        >= dt.datetime.fromisoformat(before["finished_at"])), (before, after)
            rows_verified += total

        # the same requests, one at a time on the idle server (the same rows): the baseline
        idle = {}
        for kind, paths in (("status", [f"/jobs/{j}" for j in load_jobs] * 10),
                            ("dataset", [f"/datasets/{d}" for d in datasets.values()] * 4),
                            ("datasets", ["/datasets"] * 20)):
            seconds = []
            for path in paths:
                t0 = time.perf_counter()
                assert api.get(path, timeout=TRANSPORT_TIMEOUT_S).status == 200
                seconds.append(time.perf_counter() - t0)
            idle[kind] = percentiles(seconds)
    finally:
        srv.terminate()

    # ---- C4: the same requests, one after another in the order they ran, in a fresh database
    with new_database(pg_server_url, "serial") as serial_url, connect(serial_url) as conn:
        upgrade(conn)
        for name, job_ids in order.items():
            serial_id = None
            for job_id in job_ids:
                request = dict(requests_of[job_id][1])
                if "expand_dataset_id" in request:
                    request["expand_dataset_id"] = serial_id
                created = submit(conn, **request)
                serial_id = created["dataset_id"]
                assert run_job(serial_url, created["job_id"]).status == "completed"
            mine = row_digests(db_url, datasets[name])
            assert mine == row_digests(serial_url, serial_id), f"{name}: rows differ"

    load_samples = sum(n for _, n, _ in plan.jobs)
    latency = {kind: percentiles([r.seconds for r in board.records if r.kind == kind])
               for kind in ("status", "dataset", "datasets", "stream")}
    figures = {
        "jobs": len(plan.jobs), "datasets": len(datasets),
        "same_dataset": max(sum(1 for d, *_ in plan.jobs if d == name) for name in datasets),
        "pollers": plan.pollers, "streamers": plan.streamers, "workers": plan.workers,
        "held_jobs": peaks.get("held", 0), "running_jobs": peaks.get("running", 0),
        "backends": peaks.get("backends", 0), "max_open_streams": board.max_open_streams,
        "streams": len(board.streams), "requests": len(board.records),
        "server_errors": 0, "transport_errors": 0, "latency": latency, "idle": idle,
        "rows_verified": rows_verified, "load_samples": load_samples, "load_s": t_load,
        "samples_per_s": load_samples / t_load}
    print(json.dumps(figures, indent=1))
    for kind, p in latency.items():
        print(f"{kind:>8}: {p['n']:6d} requests, p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms, "
              f"max {p['max']:.1f} ms" + (f"; idle p50 {idle[kind]['p50']:.1f} ms"
                                          if kind in idle else ""))
    return figures


def test_load_bounded(db_url, pg_server_url, tmp_path):
    figures = run_load(db_url, pg_server_url, tmp_path / "server.log", CI_PLAN)
    assert figures["same_dataset"] >= 3 and figures["max_open_streams"] >= 1


@pytest.mark.slow
def test_load_soak(db_url, pg_server_url, tmp_path):
    figures = run_load(db_url, pg_server_url, tmp_path / "server.log", SOAK_PLAN)
    assert figures["max_open_streams"] >= 30 and figures["held_jobs"] >= 8
    publish_soak_figures("load", {**figures, "poll_every_s": SOAK_PLAN.poll_every_s,
                                  "max_event_streams": MAX_EVENT_STREAMS})


# ---- the capacity fixes ---------------------------------------------------------------------

class HeldStream:
    """An event stream opened and read up to its first event, then left open."""

    def __init__(self, client: Client, job_id: str):
        self.conn = http.client.HTTPConnection(client.host, client.port,
                                               timeout=TRANSPORT_TIMEOUT_S)
        self.conn.request("GET", f"{API}/jobs/{job_id}/events")
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, self.resp.read()
        self.events = _sse_events(self.resp, limit=1)
        assert self.events, "the stream ended before its first event"

    def finish(self) -> list[tuple[str, dict]]:
        try:
            return self.events + _sse_events(self.resp)
        finally:
            self.conn.close()


def _stream_opens_within(client: Client, job_id: str, seconds: float) -> list:
    """A stream on the job, retried while refused at capacity: [(first event, its job)]."""
    deadline = time.monotonic() + seconds
    while True:
        stream = read_stream(client, job_id, limit=1)
        if stream.status == 200:
            return [(name, data.get("job_id", data.get("id"))) for name, data in stream.events]
        assert stream.status == 503 and time.monotonic() < deadline, stream
        time.sleep(0.2)


def _hold_dataset(conn, dataset_id: str) -> None:
    """Take the dataset's advisory lock, as a job of another process would: a job on the
    dataset then waits, queued, until the lock is let go."""
    conn.execute("SELECT pg_advisory_lock(%s)", (dataset_key(dataset_id),))


def _queued_expansion(api, holder, name: str, base_samples: int, seed: int,
                      num_samples: int) -> tuple[dict, str]:
    """A dataset of ``base_samples`` and an expansion of it by ``num_samples`` that waits,
    queued, while ``holder`` (a connection) holds the dataset; it runs once ``holder`` lets
    go. Returns (base job, job id)."""
    base = api.generate(name=name, num_samples=base_samples, seed=seed)
    api.wait(base["job_id"])
    _hold_dataset(holder, base["dataset_id"])
    job_id = api.generate(expand_dataset_id=base["dataset_id"],
                          num_samples=num_samples)["job_id"]
    api.wait(job_id, statuses=("queued",))
    return base, job_id


def test_streams_at_their_limit_leave_the_status_endpoint_answering(db_url, tmp_path):
    """MAX_EVENT_STREAMS streams held open on a job that waits (queued, as long as the test
    holds its dataset): the status endpoint still answers (with one stream per thread, as
    before the fix, it waited until the streams ended: here, never); one stream more is refused
    at once with 503 and Retry-After; the open streams cost the database one connection."""
    srv = ServerProcess(db_url, tmp_path / "server.log")
    try:
        api = srv.client
        with psycopg.connect(db_url, autocommit=True) as holder:
            base, job_id = _queued_expansion(api, holder, "held", 100, 3, 3000)
            streams = [HeldStream(api, job_id) for _ in range(MAX_EVENT_STREAMS)]
            for _ in range(10):
                for path in (f"/jobs/{job_id}", f"/datasets/{base['dataset_id']}", "/datasets",
                             "/api/health"):
                    assert api.get(path, timeout=TRANSPORT_TIMEOUT_S).status == 200, path
            assert api.job(job_id)["status"] == "queued"
            events_conns, all_conns = holder.execute(
                "SELECT count(*) FILTER (WHERE application_name = 'heimdall-events'), count(*) "
                "FROM pg_stat_activity WHERE datname = current_database()").fetchone()
            # the reader's, the runner's, the waiting job's two, this test's, and the two request
            # pools' (an idle connection each, at most two while requests come one at a time):
            # nowhere near one per open stream (48)
            assert events_conns == 1 and all_conns <= 9, (events_conns, all_conns)
            extra = read_stream(api, job_id, limit=1)  # one event, should the stream open
            assert extra.status == 503, extra
            refusal = json.loads(extra.error)
            assert refusal["error"] == "too_many_streams" and job_id in refusal["message"]
            assert extra.headers["Retry-After"] == "5"
            # a client that goes away gives its slot back (the server notices at its next
            # write: a progress event, every second while the job waits)
            streams.pop().conn.close()
            assert _stream_opens_within(api, job_id, 60)[0] == ("status", job_id)
        # the lock is let go: the job runs; every stream ends with the job's final record
        results = [s.finish() for s in streams]
        job = api.wait(job_id)
        assert (job["status"], job["generated"]) == ("completed", 3000)
        for events in results:
            names = [name for name, _ in events]
            assert names[0] == "status" and names.count("final") == 1 and names[-1] == "final"
            final = events[-1][1]
            assert (final["generated"], final["committed_count"]) == (3000, 3100)
            assert final["finished_at"] == job["finished_at"]
        # the slots were given back: a new stream opens and gets the final record at once
        assert _stream_opens_within(api, job_id, 60)[0] == ("final", job_id)
        # and with no stream left, the reader lets go of its connection
        with psycopg.connect(db_url, autocommit=True) as probe:
            deadline = time.monotonic() + 60
            while probe.execute("SELECT count(*) FROM pg_stat_activity WHERE "
                                "application_name = 'heimdall-events'").fetchone()[0]:
                assert time.monotonic() < deadline, "the event reader kept its connection"
                time.sleep(0.05)
    finally:
        srv.terminate()


def test_a_lost_reader_connection_ends_the_streams_with_an_error_event(db_url, tmp_path):
    """The shared reader's connection killed (pg_terminate_backend) while streams follow a
    waiting job: each stream ends with an ``error`` event (database_unavailable) instead of
    hanging or breaking off; a new stream reads again on a new connection."""
    srv = ServerProcess(db_url, tmp_path / "server.log")
    try:
        api = srv.client
        with psycopg.connect(db_url, autocommit=True) as holder:
            base, job_id = _queued_expansion(api, holder, "reader", 10, 4, 100)
            streams = [HeldStream(api, job_id) for _ in range(3)]
            assert holder.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE "
                "application_name = 'heimdall-events'").fetchone()[0] == 1
            for stream in streams:
                events = stream.finish()
                assert events[-1][0] == "error", events
                assert events[-1][1]["error"] == "database_unavailable"
                assert [name for name, _ in events].count("error") == 1
            assert _stream_opens_within(api, job_id, 60)[0] == ("status", job_id)
        assert api.wait(job_id)["status"] == "completed"
    finally:
        srv.terminate()


def _storm(client: Client, path: str, n: int, replies: list) -> list[threading.Thread]:
    threads = [threading.Thread(target=lambda: replies.append(
        client.get(path, timeout=60))) for _ in range(n)]
    for t in threads:
        t.start()
    return threads


def _waiting_settles_at(monitor, expected: int) -> None:
    """Until ``expected`` backends wait on a lock, then a second in which no more show up."""
    def waiting() -> int:
        return monitor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "wait_event_type = 'Lock'").fetchone()[0]

    deadline = time.monotonic() + 30
    while waiting() < expected:
        assert time.monotonic() < deadline, waiting()
        time.sleep(0.02)
    seen = []
    for _ in range(50):
        seen.append(waiting())
        time.sleep(0.02)
    assert max(seen) == expected, seen


def test_requests_beyond_their_slots_wait_without_a_connection(db_url, tmp_path):
    """Twenty dataset reads while the test locks the samples table: only DATASET_READ_CONNECTIONS of
    them reach the database (and wait there on the lock), the others wait for a slot holding no
    connection, and meanwhile a status poll answers (with one kind of slot, as first built, the
    dataset reads took every slot and the poll waited for the lock). Then forty status polls
    while the test locks the jobs table: only REQUEST_CONNECTIONS reach the database. Without slots
    every thread would open a connection (128, past PostgreSQL's max_connections). All answer
    once the lock is let go."""
    srv = ServerProcess(db_url, tmp_path / "server.log")
    try:
        api = srv.client
        created = api.generate(name="slots", num_samples=10, seed=1)
        job_id, dataset_id = created["job_id"], created["dataset_id"]
        api.wait(job_id)
        replies: list = []
        with psycopg.connect(db_url, autocommit=True) as monitor:
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE heimdall.measurement_features IN ACCESS EXCLUSIVE "
                                "MODE")
                threads = _storm(api, f"/datasets/{dataset_id}", 20, replies)
                _waiting_settles_at(monitor, DATASET_READ_CONNECTIONS)
                for _ in range(5):
                    reply = api.get(f"/jobs/{job_id}", timeout=TRANSPORT_TIMEOUT_S)
                    assert reply.status == 200 and reply.json["status"] == "completed"
                blocker.rollback()
            for t in threads:  # the dataset reads end (they read the jobs table too: devices)
                t.join(60)
            assert len(replies) == 20 and all(r.status == 200 for r in replies), replies
            with psycopg.connect(db_url) as blocker:
                blocker.execute("LOCK TABLE heimdall.generation_jobs IN ACCESS EXCLUSIVE MODE")
                threads += _storm(api, f"/jobs/{job_id}", 40, replies)
                _waiting_settles_at(monitor, REQUEST_CONNECTIONS)
                blocker.rollback()
        for t in threads:
            t.join(60)
        assert len(replies) == 60 and all(r.status == 200 for r in replies), replies
    finally:
        srv.terminate()


def test_a_job_waiting_for_its_dataset_leaves_the_workers_to_others(db_url):
    """Two job workers. The test holds dataset a (as another process's job would): a's first
    expansion waits for it in a worker, the next two wait behind it WITHOUT a worker (queued),
    and a job on another dataset runs meanwhile. (Before the fix the second expansion took the
    other worker just to wait, and the other dataset's job waited as long as the lock.) A job
    waiting behind another is cancelled at once; on a clean stop the waiting jobs are recorded
    interrupted and resume to their targets, one after another."""
    srv = start_server(db_url)
    try:
        api = Client(srv.url)
        a = api.generate(name="a", num_samples=10, seed=1)
        api.wait(a["job_id"])
        with psycopg.connect(db_url, autocommit=True) as holder:
            _hold_dataset(holder, a["dataset_id"])
            first = api.generate(expand_dataset_id=a["dataset_id"], num_samples=3000)["job_id"]
            api.wait(first, statuses=("queued",))
            second = api.generate(expand_dataset_id=a["dataset_id"], num_samples=2000)["job_id"]
            third = api.generate(expand_dataset_id=a["dataset_id"], num_samples=1000)["job_id"]
            for job_id, ahead in ((second, first), (third, second)):
                job = api.job(job_id)
                assert job["status"] == "queued", job
                assert job["progress_message"] == f"waiting for job {ahead} on this dataset"
            other = api.generate(name="b", num_samples=5000, seed=2)
            assert api.wait(other["job_id"], timeout=TRANSPORT_TIMEOUT_S)["status"] == "completed"
            reply = api.post(f"/jobs/{third}/cancel")
            assert reply.status == 202 and reply.json["status"] == "cancelled", reply
            assert reply.json["generated"] == 0
            assert api.job(second)["status"] == "queued"
        done = [api.wait(first), api.wait(second)]
        assert [(j["status"], j["samples_offset"], j["generated"]) for j in done] == [
            ("completed", 10, 3000), ("completed", 3010, 2000)]
        assert url_counts(db_url, a["dataset_id"]) == (5010, 5010)

        # stopping with one job waiting in a worker and one behind it: both interrupted
        with psycopg.connect(db_url, autocommit=True) as holder:
            _hold_dataset(holder, a["dataset_id"])
            fourth = api.generate(expand_dataset_id=a["dataset_id"], num_samples=500)["job_id"]
            api.wait(fourth, statuses=("queued",))
            fifth = api.generate(expand_dataset_id=a["dataset_id"], num_samples=700)["job_id"]
            assert api.job(fifth)["status"] == "queued"
            srv.stop()
        srv = start_server(db_url)
        api = Client(srv.url)
        for job_id in (fourth, fifth):
            job = api.job(job_id)
            assert (job["status"], job["generated"]) == ("interrupted", 0), job
            assert api.post(f"/jobs/{job_id}/resume").status == 202
        assert [api.wait(j)["status"] for j in (fourth, fifth)] == ["completed"] * 2
        assert url_counts(db_url, a["dataset_id"]) == (6210, 6210)
        assert api.get(f"/datasets/{a['dataset_id']}/validate").json["ok"] is True
    finally:
        srv.stop()


def test_a_job_whose_turn_came_waits_for_a_worker_as_pending(db_url):
    """One job worker. a's first expansion waits for the test's lock on a (in the worker), its
    second waits behind it (queued, no worker); a job on b waits for the worker. When a's
    first expansion ends, the second's turn has come, but b's job (ahead of it in the pool,
    and now waiting for the test's lock on b) has the worker: the second is shown pending,
    waiting for a job worker, no longer queued behind a job that has ended."""
    srv = start_server(db_url, JOB_WORKERS=1)
    try:
        api = Client(srv.url)
        a = api.generate(name="a", num_samples=10, seed=1)
        b = api.generate(name="b", num_samples=10, seed=2)
        api.wait(a["job_id"]), api.wait(b["job_id"])
        with psycopg.connect(db_url, autocommit=True) as hold_a, \
                psycopg.connect(db_url, autocommit=True) as hold_b:
            _hold_dataset(hold_a, a["dataset_id"])
            _hold_dataset(hold_b, b["dataset_id"])
            first = api.generate(expand_dataset_id=a["dataset_id"], num_samples=300)["job_id"]
            api.wait(first, statuses=("queued",))
            second = api.generate(expand_dataset_id=a["dataset_id"], num_samples=200)["job_id"]
            on_b = api.generate(expand_dataset_id=b["dataset_id"], num_samples=100)["job_id"]
            assert api.job(second)["status"] == "queued" and api.job(on_b)["status"] == "pending"
            hold_a.close()
            assert api.wait(first)["status"] == "completed"
            api.wait(on_b, statuses=("queued",))  # it has the worker, and waits for b
            job = api.job(second)
            assert (job["status"], job["progress_message"]) == (
                "pending", "waiting for a job worker"), job
        assert [api.wait(j)["status"] for j in (on_b, second)] == ["completed"] * 2
        assert api.job(second)["samples_offset"] == 310
    finally:
        srv.stop()
