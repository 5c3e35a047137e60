"""GET /jobs/{id}/events: a job's progress as server-sent events, read from the database.

Every ``events_poll_s`` (0.25 s) the stream reads the job row and its dataset's committed count
in one statement. The row is the source of truth, so the stream works the same for a job run by
this process, by another service process or by the CLI. Events (``event:`` name, ``data:`` one
JSON object, ``id:`` a sequence number):

* ``status``   when the status changes (pending, queued, running);
* ``progress`` the job record's counts and cumulative progress text, whenever they change and at
  least once a second while the job is active;
* ``batch``    one per committed batch, with the dataset's committed count after that commit. For
  a job run by this process they are the loop's own batch events (exact, replayed from the start
  of the current run). For a job run elsewhere they are derived from the row: one per change of
  the committed counts seen by a poll (``"batch": null``; commits closer together than the poll
  interval are reported together);
* ``final``    the job's record once it has ended; then the stream ends. A client connecting
  after the end gets the final event at once.

Keep-alive comments (``: keep-alive``) are sent every ``events_keepalive_s`` seconds.
"""

from __future__ import annotations

import logging
import time
from typing import Iterator

from service.database import connect
from service.request import NotFoundError

from .serialize import TERMINAL, dumps

log = logging.getLogger("heimdall.service")
PROGRESS_EVERY_S = 1.0

_PROGRESS_KEYS = ("id", "dataset_id", "status", "progress", "requested", "generated", "attempted",
                  "success_rate", "rejections", "samples_offset", "target_count",
                  "committed_count", "dataset_num_samples", "cancel_requested", "device",
                  "duration_s", "samples_per_second")


def _sse(seq: int, event: str, data: dict) -> str:
    return f"id: {seq}\nevent: {event}\ndata: {dumps(data)}\n\n"


def event_stream(service, job_id: str) -> Iterator[str]:
    from .jobs import load_job
    poll, keepalive = service.events_poll_s, service.events_keepalive_s
    conn = connect(service.url, autocommit=True)
    seq = 0
    try:
        yield "retry: 3000\n: connected\n\n"
        entry = service.runner.entry(job_id)
        replayed = 0              # number of the last local batch event sent
        last_status = None
        last_counts = None        # (generated, attempted, committed) of the last progress
        last_progress = last_write = 0.0
        while True:
            try:
                job = load_job(conn, job_id)
            except NotFoundError:
                seq += 1
                yield _sse(seq, "error", {"error": "not_found", "message":
                                          f"job {job_id} no longer exists (its dataset was "
                                          "deleted)", "field": "job_id"})
                return
            now = time.monotonic()
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
                        break  # not visible in the row yet: next poll
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
            time.sleep(poll)
    finally:
        conn.close()
