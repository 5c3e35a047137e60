"""GET /jobs/{id}/events: a job's progress as server-sent events, read from the database.

The job row is the source of truth, so a stream works the same for a job run by this process,
by another service process or by the CLI. Streams do not query the database themselves: one
``JobWatch`` per app reads the rows of every job that some stream follows, with its dataset's
committed count, in ONE statement every ``events_poll_s`` (0.25 s) on ONE connection, and the
streams wait for its next reading. So a hundred open streams cost one connection and four
small queries a second, not a hundred of each (docs/API.md, "Capacity").

Each open stream holds one of the WSGI server's threads for its whole life (waitress has no
other way to stream). ``MAX_EVENT_STREAMS`` in the app's config (``http.server`` sets it
below its thread count) caps them, so that threads always stay free for other requests; a
stream asked for beyond the cap is refused at once with 503 ``too_many_streams`` and a
``Retry-After`` header, before anything is sent.

Events (``event:`` name, ``data:`` one JSON object, ``id:`` a sequence number):

* ``status``   when the status changes (pending, queued, running);
* ``progress`` the job record's counts and cumulative progress text, whenever they change and at
  least once a second while the job is active;
* ``batch``    one per committed batch, with the dataset's committed count after that commit. For
  a job run by this process they are the loop's own batch events (exact, replayed from the start
  of the current run). For a job run elsewhere they are derived from the row: one per change of
  the committed counts seen by a reading (``"batch": null``; commits closer together than the
  poll interval are reported together);
* ``final``    the job's record once it has ended; then the stream ends. A client connecting
  after the end gets the final event at once;
* ``error``    the job was deleted (``not_found``), or a reading failed: the database did not
  answer (``database_unavailable``) or a bug (``internal_error``, in the log); then the stream
  ends and the client may reconnect.

Keep-alive comments (``: keep-alive``) are sent every ``events_keepalive_s`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Iterator

import psycopg

from heimdall_synth.service.storage.database import connect

from heimdall_synth.service.http.common import ApiError
from heimdall_synth.service.http.job_routes import JOB_WITH_COUNT
from heimdall_synth.service.engine.states import TERMINAL
from heimdall_synth.service.http.serialize import dumps, job_json

log = logging.getLogger("heimdall.service")
PROGRESS_EVERY_S = 1.0
RETRY_AFTER_S = 5          # what a client refused at capacity is told to wait
_WATCH_KEY = "heimdall.events"
_WATCH_LOCK = threading.Lock()

_PROGRESS_KEYS = ("id", "dataset_id", "status", "progress", "requested", "generated", "attempted",
                  "success_rate", "rejections", "samples_offset", "target_count",
                  "committed_count", "dataset_num_samples", "cancel_requested", "device",
                  "duration_s", "samples_per_second")

# The same statement as GET /jobs/{id}, for every followed job at once.
_READING_SQL = JOB_WITH_COUNT + " WHERE j.id = ANY(%s::uuid[])"


class JobWatch:
    """Reads the rows of every followed job in one statement per poll; streams wait for it.

    Readings are numbered. ``follow(job_id)`` returns the number of the first reading that
    includes the job (one that starts after the call), so a stream never gets a reading older
    than its own start; later readings are newer snapshots, so counts never go backwards. The
    reading thread runs while some stream follows a job, and exits (closing its connection)
    when none does.
    """

    def __init__(self, service, max_streams: int | None):
        self.service = service
        self.max_streams = max_streams
        self.streams = 0                      # open streams, refused beyond max_streams
        self._followers: Counter = Counter()  # job id -> open streams following it
        self._cond = threading.Condition()
        self._wake = threading.Event()        # a new follower: read now, not at the next poll
        self._thread: threading.Thread | None = None
        self._next = 0                        # number of the next reading to start
        self._seq = -1                        # number of the last reading published
        self._jobs: dict[str, dict] = {}      # job id -> record, in the last reading
        self._error: dict | None = None       # why the last reading failed ({error, message})

    def follow(self, job_id: str) -> int:
        with self._cond:
            if self.max_streams is not None and self.streams >= self.max_streams:
                raise ApiError(
                    503, "too_many_streams",
                    f"this server already holds {self.streams} event streams, its limit; retry "
                    f"in {RETRY_AFTER_S} s, or poll GET /jobs/{job_id} (the same record)",
                    headers={"Retry-After": str(RETRY_AFTER_S)})
            self.streams += 1
            self._followers[job_id] += 1
            first = self._next
            if self._thread is None:
                self._thread = threading.Thread(target=self._read_while_followed, daemon=True,
                                                name="heimdall-events")
                self._thread.start()
        self._wake.set()
        return first

    def unfollow(self, job_id: str) -> None:
        with self._cond:
            self.streams -= 1
            self._followers[job_id] -= 1
            if self._followers[job_id] <= 0:
                del self._followers[job_id]

    def reading(self, job_id: str, first: int, timeout: float):
        """The latest reading numbered ``first`` or later, as (number, record or None when the
        job does not exist, {error, message} or None); None when none came within ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq >= first, timeout):
                return None
            return self._seq, self._jobs.get(job_id), self._error

    def _read_while_followed(self) -> None:
        conn = None
        try:
            while True:  # the thread ends when no stream follows a job (or the app closed)
                self._wake.clear()
                with self._cond:
                    if not self._followers or self.service.closed:
                        self._thread = None
                        return
                    seq, self._next = self._next, self._next + 1
                    ids = list(self._followers)
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = connect(self.service.url, autocommit=True,
                                       application_name="heimdall-events")
                    cur = conn.execute(_READING_SQL, (ids,))
                    names = [c.name for c in cur.description]
                    jobs = {}
                    for values in cur.fetchall():
                        row = dict(zip(names, values))
                        jobs[str(row["id"])] = job_json(row, row.pop("dataset_num_samples"))
                    error = None
                except psycopg.Error as exc:
                    log.warning("event streams: reading the jobs failed: %s", exc)
                    if conn is not None:
                        conn.close()
                        conn = None
                    jobs, error = {}, {"error": "database_unavailable", "message":
                                       f"the database did not answer ({type(exc).__name__}: "
                                       f"{exc}); reconnect to go on following the job"}
                except Exception:  # noqa: BLE001 - the streams must hear of it, not hang
                    log.exception("event streams: reading the jobs failed")
                    jobs, error = {}, {"error": "internal_error", "message":
                                       "reading the job failed; the service log has the "
                                       "details; reconnect to go on following the job"}
                with self._cond:
                    self._seq, self._jobs, self._error = seq, jobs, error
                    self._cond.notify_all()
                self._wake.wait(self.service.events_poll_s)
        finally:
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None  # also when it died: the next follow() starts another
            if conn is not None:
                conn.close()


def job_watch(app, service) -> JobWatch:
    """The app's JobWatch, made on first use."""
    with _WATCH_LOCK:
        watch = app.extensions.get(_WATCH_KEY)
        if watch is None:
            watch = app.extensions[_WATCH_KEY] = JobWatch(
                service, app.config.get("MAX_EVENT_STREAMS"))
        return watch


def _sse(seq: int, event: str, data: dict) -> str:
    return f"id: {seq}\nevent: {event}\ndata: {dumps(data)}\n\n"


class EventStream:
    """The body of one event stream. Takes a stream slot when made (503 at capacity) and gives
    it back when the events end, or in ``close()``, which the WSGI server calls when the stream
    ends or its client goes, also when it never started iterating."""

    def __init__(self, service, job_id: str):
        from flask import current_app
        self.service, self.job_id = service, job_id
        self.watch = job_watch(current_app, service)
        self.first = self.watch.follow(job_id)
        self._open = True
        self._lock = threading.Lock()
        self._events = self._generate()

    def __iter__(self) -> Iterator[str]:
        return self._events

    def close(self) -> None:
        self._events.close()
        self._release()

    def _release(self) -> None:
        with self._lock:
            if not self._open:
                return
            self._open = False
        self.watch.unfollow(self.job_id)

    def _generate(self) -> Iterator[str]:
        try:
            yield from self._events_until_the_end()
        finally:
            self._release()

    def _events_until_the_end(self) -> Iterator[str]:
        service, job_id, watch = self.service, self.job_id, self.watch
        poll, keepalive = service.events_poll_s, service.events_keepalive_s
        seq = 0
        yield "retry: 3000\n: connected\n\n"
        entry = service.runner.entry(job_id)
        replayed = 0              # number of the last local batch event sent
        last_status = None
        last_counts = None        # (generated, attempted, committed) of the last progress
        last_progress = last_write = 0.0
        after = self.first
        while True:
            got = watch.reading(job_id, after, timeout=poll)
            now = time.monotonic()
            if got is None:       # no reading yet (a slow or failing database): stay alive
                if now - last_write >= keepalive:
                    yield ": keep-alive\n\n"
                    last_write = now
                if service.stopping or service.closed:
                    return
                continue
            number, job, error = got
            after = number + 1
            if error is not None:
                seq += 1
                yield _sse(seq, "error", error)
                return
            if job is None:
                seq += 1
                yield _sse(seq, "error", {"error": "not_found", "message":
                                          f"job {job_id} no longer exists (its dataset was "
                                          "deleted)", "field": "job_id"})
                return
            status = job["status"]
            if last_status is None and status in TERMINAL:
                seq += 1
                yield _sse(seq, "final", job)
                return
            # batch events: the loop's own when the job runs here, else derived from the row
            if entry is None:
                entry = service.runner.entry(job_id)
            counts = (job["generated"], job["attempted"], job["dataset_num_samples"])
            if entry is not None:
                for event in entry.batches.copy():
                    if event["batch"] <= replayed:
                        continue
                    if event["attempted"] > job["attempted"]:
                        break  # not visible in the row yet: next reading
                    event = {k: v for k, v in event.items() if k != "type"}
                    seq += 1
                    yield _sse(seq, "batch", event)
                    replayed = event["batch"]
                    last_write = now
            elif last_counts is not None and counts[:2] != last_counts[:2]:
                seq += 1
                yield _sse(seq, "batch", {
                    "job_id": job_id, "batch": None, "saved": job["generated"] - last_counts[0],
                    "generated": job["generated"], "requested": job["requested"],
                    "attempted": job["attempted"], "samples_offset": job["samples_offset"],
                    "committed_count": job["dataset_num_samples"], "message": job["progress"],
                    "rejections": job["rejections"]})
                last_write = now
            if status != last_status:  # after the batches that led to it
                seq += 1
                yield _sse(seq, "status", {"job_id": job_id, "status": status,
                                           "progress": job["progress"]})
                last_status, last_write = status, now
            if status in TERMINAL:
                seq += 1
                yield _sse(seq, "final", job)
                return
            if counts != last_counts or now - last_progress >= PROGRESS_EVERY_S - poll / 2:
                seq += 1
                yield _sse(seq, "progress", {k: job[k] for k in _PROGRESS_KEYS})
                last_counts, last_progress, last_write = counts, now, now
            if now - last_write >= keepalive:
                yield ": keep-alive\n\n"
                last_write = now
            if service.stopping or service.closed:
                return


def event_stream(service, job_id: str) -> EventStream:
    """The body of GET /jobs/{id}/events (raises ApiError 503 when the streams are at their
    limit)."""
    return EventStream(service, job_id)
