"""Jobs over real HTTP: the event stream, cancel at the next batch, delete refused while a job
runs, two expansions of one dataset queued one after the other, and a server SIGKILLed mid-job,
restarted, its job shown interrupted, resumed, and its rows identical to an uninterrupted run.

Nothing here is timed: what a test once held to a number of seconds it now holds in events,
batches and states (a loaded two-core machine makes every wall-clock bound flaky)."""

from __future__ import annotations

import http.client
import threading

import psycopg

from heimdall_synth.service.storage.locks import dataset_key
from tests.helpers import db_state, row_digests, url_counts, wait_for_locks_released
from tests.http_client import API, Client, ServerProcess, read_sse, start_server


def test_event_stream_reports_every_batch_then_the_final_record(api, db_url):
    created = api.generate(name="streamed", num_samples=30_000, seed=21, batch_size=500)
    events = api.events(created["job_id"])
    names = [name for _, name, _ in events]
    assert names[-1] == "final" and names.count("final") == 1
    final = events[-1][2]
    assert final["status"] == "completed" and final["progress"] == "30,000 / 30,000"
    batches = [data for _, name, data in events if name == "batch"]
    # one event per committed batch (replayed from the run's start), counts as committed
    assert [b["batch"] for b in batches] == list(range(1, len(batches) + 1))
    assert len(batches) >= 10
    assert all(b["committed_count"] == b["generated"] for b in batches)
    assert [b["committed_count"] for b in batches] == sorted(
        {b["committed_count"] for b in batches})
    assert batches[-1]["committed_count"] == 30_000 == final["committed_count"]
    assert sum(b["saved"] for b in batches) == 30_000
    assert names.index("status") < names.index("progress")
    statuses = [data["status"] for _, name, data in events if name == "status"]
    assert statuses[-1] == "completed" and names[-2] == "status"  # after the last batch
    # progress events follow the job row as it grows: their counts never go back, and no batch
    # event runs ahead of the row (a progress event never shows less than a batch before it)
    progress = [data["committed_count"] for _, name, data in events if name == "progress"]
    assert progress and progress == sorted(progress) and progress[-1] <= 30_000
    shown = 0
    for _, name, data in events:
        if name == "batch":
            shown = data["committed_count"]
        elif name == "progress":
            assert data["committed_count"] >= shown, (data, shown)
    # a client connecting after the end gets the final record, and only it
    again = api.events(created["job_id"])
    assert [e[1] for e in again] == ["final"]
    assert again[0][2]["status"] == "completed"
    assert url_counts(db_url, created["dataset_id"]) == (30_000, 30_000)


def test_a_waiting_job_still_gets_progress_events(api, db_url):
    """While a job is active, progress events come even when nothing changes (at least once a
    second, docs/API.md): here an expansion waiting, queued, for its dataset, which the test
    holds as another process's job would. Counted in events, not timed."""
    base = api.generate(name="held", num_samples=10, seed=3)
    api.wait(base["job_id"])
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (dataset_key(base["dataset_id"]),))
        job_id = api.generate(expand_dataset_id=base["dataset_id"], num_samples=100)["job_id"]
        api.wait(job_id, statuses=("queued",))
        conn = http.client.HTTPConnection(api.host, api.port, timeout=60)
        try:
            conn.request("GET", f"{API}/jobs/{job_id}/events")
            resp = conn.getresponse()
            assert resp.status == 200
            events = [(name, data) for _, name, data in read_sse(resp, limit=4)]
        finally:
            conn.close()
        assert api.job(job_id)["status"] == "queued"  # it waited all along
    assert [name for name, _ in events] == ["status", "progress", "progress", "progress"]
    assert events[0][1]["status"] == "queued"
    assert all((data["status"], data["generated"], data["committed_count"]) == ("queued", 0, 10)
               for _, data in events[1:]), events
    assert api.wait(job_id)["generated"] == 100  # the dataset let go: it ran


def test_cancel_lands_at_the_next_batch_and_delete_waits_for_it(api, db_url):
    created = api.generate(name="cancel-me", num_samples=200_000, batch_size=2000, seed=5)
    job_id, dataset_id = created["job_id"], created["dataset_id"]
    api.wait_running(job_id)

    # delete is refused while the job runs, and changes nothing
    before = db_state(db_url)
    reply = api.delete(f"/datasets/{dataset_id}")
    assert reply.status == 409 and reply.json["error"] == "dataset_busy", reply
    assert reply.json["fields"] == ["dataset_id"] and job_id in reply.json["message"]
    assert api.get(f"/datasets/{dataset_id}").status == 200

    reply = api.post(f"/jobs/{job_id}/cancel")
    assert reply.status == 202 and reply.json["cancel_requested"] is True, reply
    job = api.wait(job_id, every=0.01)
    assert (job["status"], job["stopped_reason"]) == ("cancelled", "cancelled")
    # counted in batches, not seconds: no batch committed after the cancel was answered (the
    # batch committing at that moment, if any, is in the reply's count), so the job stopped
    # at its next batch and its count is the one the reply showed
    print(f"cancel answered at {reply.json['generated']:,}; the job ended at {job['generated']:,}")
    assert job["generated"] == reply.json["generated"]
    assert job["committed_count"] == reply.json["committed_count"]
    assert 0 < job["generated"] < 200_000
    assert url_counts(db_url, dataset_id) == (job["generated"],) * 2
    assert before[0][0:2] == db_state(db_url)[0][0:2]  # no dataset or job appeared
    # cancelling again is a 409, and the job can be resumed later
    assert api.post(f"/jobs/{job_id}/cancel").json["error"] == "not_active"

    reply = api.delete(f"/datasets/{dataset_id}")
    assert reply.status == 200 and reply.json == {"id": dataset_id, "deleted": True}
    assert api.get(f"/datasets/{dataset_id}").status == 404
    assert api.get(f"/jobs/{job_id}").status == 404
    assert db_state(db_url)[0] == (0, 0, 0)


def test_two_expansions_of_one_dataset_queue_and_both_complete(api, db_url):
    base = api.generate(name="shared", num_samples=5, seed=6)
    api.wait(base["job_id"])
    first = api.generate(expand_dataset_id=base["dataset_id"], num_samples=40_000,
                         batch_size=1000)
    second = api.generate(expand_dataset_id=base["dataset_id"], num_samples=3000,
                          batch_size=1000)
    # the reply says what the runner wrote on the row: the second waits behind the first
    assert (first["status"], second["status"]) == ("pending", "queued")
    seen = {first["job_id"]: [], second["job_id"]: []}

    def watch(job_id):
        api.wait(job_id, timeout=60, every=0.01, seen=seen[job_id])

    watchers = [threading.Thread(target=watch, args=(j,)) for j in seen]
    for w in watchers:
        w.start()
    for w in watchers:
        w.join()
    a, b = api.job(first["job_id"]), api.job(second["job_id"])
    assert a["status"] == b["status"] == "completed"
    assert "queued" in seen[first["job_id"]] + seen[second["job_id"]]
    # one ran after the other: the offsets chain, and the counts add up exactly
    runs = sorted([a, b], key=lambda j: j["samples_offset"])
    assert runs[0]["samples_offset"] == 5
    assert runs[1]["samples_offset"] == 5 + runs[0]["requested"]
    assert url_counts(db_url, base["dataset_id"]) == (43_005, 43_005)
    ds = api.get(f"/datasets/{base['dataset_id']}").json
    assert (ds["num_samples"], ds["actual_count"]) == (43_005, 43_005)
    assert api.get(f"/datasets/{base['dataset_id']}/validate").json["ok"] is True
    listed = api.get(f"/jobs?dataset_id={base['dataset_id']}&limit=10").json
    assert {j["id"] for j in listed["jobs"]} == {base["job_id"], first["job_id"],
                                                 second["job_id"]}


def test_killed_server_restarted_job_interrupted_resumed_rows_identical(db_url, tmp_path):
    log = tmp_path / "server.log"
    srv = ServerProcess(db_url, log)
    try:
        created = srv.client.generate(name="killed", num_samples=60_000, batch_size=500,
                                      seed=9)
        job_id, dataset_id = created["job_id"], created["dataset_id"]
        srv.client.wait_running(job_id, min_generated=2000)
    finally:
        srv.kill()
    meta, actual = url_counts(db_url, dataset_id)
    assert meta == actual and 0 < actual < 60_000  # committed batches stay, C3 holds
    wait_for_locks_released(db_url)

    srv = ServerProcess(db_url, log)  # a new process on the same database
    try:
        api = srv.client
        job = api.job(job_id)
        assert (job["status"], job["stopped_reason"]) == ("interrupted", "interrupted")
        assert job["generated"] == actual and "resume" in job["stop_message"]
        assert api.get(f"/jobs/{job_id}/events").status == 200
        reply = api.post(f"/jobs/{job_id}/resume")
        assert reply.status == 202 and reply.json["job_id"] == job_id, reply
        job = api.wait(job_id)
        assert (job["status"], job["generated"]) == ("completed", 60_000)
        assert job["progress"] == "60,000 / 60,000"
        assert api.post(f"/jobs/{job_id}/resume").json["error"] == "not_resumable"

        straight = api.generate(name="straight", num_samples=60_000, seed=9)
        assert api.wait(straight["job_id"])["status"] == "completed"
        assert url_counts(db_url, dataset_id) == (60_000, 60_000)
        resumed_rows = row_digests(db_url, dataset_id)
        assert len(resumed_rows) == 60_000
        assert resumed_rows == row_digests(db_url, straight["dataset_id"])
    finally:
        assert srv.terminate() == 0  # SIGTERM: a clean stop
    print(log.read_text())
    assert "marked interrupted" in log.read_text()


def test_a_job_of_another_process_is_followed_from_its_row(db_url):
    """Server B streams a job that server A runs: B's start leaves A's live job alone, and its
    events come from the job row (batch events derived from the committed counts)."""
    a = start_server(db_url)
    try:
        api_a = Client(a.url)
        created = api_a.generate(name="elsewhere", num_samples=100_000, batch_size=500,
                                 seed=4)
        api_a.wait_running(created["job_id"])
        b = start_server(db_url)  # runs recover_interrupted while A's job runs
        try:
            api_b = Client(b.url)
            assert api_b.job(created["job_id"])["status"] in ("running", "completed")
            events = api_b.events(created["job_id"])
        finally:
            b.stop()
    finally:
        a.stop()
    names = [name for _, name, _ in events]
    assert names[-1] == "final" and events[-1][2]["status"] == "completed"
    batches = [data for _, name, data in events if name == "batch"]
    assert batches and all(b["batch"] is None for b in batches)
    committed = [b["committed_count"] for b in batches]
    assert committed == sorted(set(committed)) and committed[-1] <= 100_000
    assert all(b["committed_count"] == b["generated"] for b in batches)
    assert url_counts(db_url, created["dataset_id"]) == (100_000, 100_000)


def test_cancel_of_a_job_waiting_for_a_worker_and_graceful_stop(db_url):
    srv = start_server(db_url, JOB_WORKERS=1)
    stopped = False
    try:
        api = Client(srv.url)
        long = api.generate(name="long", num_samples=200_000, batch_size=2000, seed=7)
        api.wait_running(long["job_id"])
        waiting = api.generate(name="waiting", num_samples=10)
        assert api.job(waiting["job_id"])["status"] == "pending"  # the only worker is busy
        # a job waiting in the pool is owned (the runner holds its lock): not an orphan
        reply = api.post(f"/jobs/{waiting['job_id']}/resume")
        assert reply.status == 409 and reply.json["error"] == "not_resumable", reply
        reply = api.post(f"/jobs/{waiting['job_id']}/cancel")
        assert reply.status == 202 and reply.json["status"] == "cancelled", reply
        assert reply.json["generated"] == 0 and "before it started" in reply.json["stop_message"]
        # stopping the server stops its running job at the next batch: interrupted, resumable
        srv.stop()
        stopped = True
    finally:
        if not stopped:
            srv.stop()
    srv = start_server(db_url)
    try:
        api = Client(srv.url)
        job = api.job(long["job_id"])
        assert (job["status"], job["stopped_reason"]) == ("interrupted", "interrupted"), job
        assert url_counts(db_url, long["dataset_id"]) == (job["generated"],) * 2
        assert api.post(f"/jobs/{waiting['job_id']}/resume").status == 202
        assert api.wait(waiting["job_id"])["generated"] == 10
        reply = api.post(f"/jobs/{long['job_id']}/cancel")  # an interrupted job can be given up
        assert reply.status == 202 and reply.json["status"] == "cancelled", reply
        assert api.post(f"/jobs/{long['job_id']}/cancel").status == 409  # not active any more
    finally:
        srv.stop()
