"""The job engine: its state machine, ownership and locks, and the defects a review found.

Each defect test fails on the code before its fix (the docstrings say how it failed).
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
import pytest

from heimdall_synth.kernel import ConfigError, GenerationConfig
from heimdall_synth.service.engine import loop, pipeline, states
from heimdall_synth.service.engine.loop import JobError, run_job
from heimdall_synth.service.engine.request import ConflictError, GenerateRequest
from heimdall_synth.service.http.serialize import job_json
from heimdall_synth.service.storage import datasets, ids, jobs, locks
from heimdall_synth.service.storage.database import stop_server
from tests.helpers import submit, wait_for_locks_released
from tests.http_client import free_port

ROOT = Path(__file__).resolve().parent.parent


def dataset_counts(conn, dataset_id):
    """(num_samples, quality_metrics.samples, COUNT(*)) from one snapshot."""
    with conn.transaction():
        return conn.execute(
            "SELECT num_samples, (quality_metrics->>'samples')::bigint, (SELECT count(*) FROM "
            "heimdall.measurement_features f WHERE f.dataset_id = d.id) FROM "
            "heimdall.synthetic_datasets d WHERE id = %s", (dataset_id,)).fetchone()


def connections(conn) -> int:
    """Other sessions open on this test's database."""
    with conn.transaction():
        return conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                            "current_database() AND pid <> pg_backend_pid()").fetchone()[0]


# ---- one state machine -------------------------------------------------------------------------

def test_every_status_change_goes_through_the_state_machine():
    """No module but engine/states.py writes a job's status."""
    writes = re.compile(r"generation_jobs\s+SET[^\"']*\bstatus\s*=", re.I)
    offenders = []
    for path in (ROOT / "service").rglob("*.py"):
        if path.name == "states.py":
            continue
        text = " ".join(path.read_text().split())  # SQL split over several string literals
        text = re.sub(r"\"\s*\"|'\s*'", "", text)
        if writes.search(text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_transitions_follow_the_table(conn):
    created = submit(conn, name="states", num_samples=5)
    job_id = created["job_id"]

    def status():
        return jobs.get_job(conn, job_id)["status"]

    with conn.transaction():
        assert states.transition(conn, job_id, "completed") is None  # pending -> completed
        assert states.transition(conn, job_id, "pending", expect="failed") is None
        assert states.transition(conn, job_id, "running")["status"] == "running"
    assert status() == "running"
    time.sleep(0.2)
    with conn.transaction():
        assert states.transition(conn, job_id, "queued") is None  # running -> queued
        assert states.transition(conn, job_id, "cancelled", stopped_reason="cancelled")
    job = jobs.get_job(conn, job_id)
    assert job["status"] == "cancelled" and job["finished_at"] is not None
    assert job["run_seconds"] >= 0.2 and job["run_started_at"] is None
    with conn.transaction():
        assert states.transition(conn, job_id, "pending")  # a resume
        assert states.transition(conn, job_id, "running")
        assert states.transition(conn, job_id, "completed")
        for to in states.STATUSES:
            assert states.transition(conn, job_id, to) is None  # completed is final
    with pytest.raises(ValueError):
        states.transition(conn, job_id, "done")
    with pytest.raises(ValueError):
        states.transition(conn, job_id, "failed", status="x")  # not a settable column


# ---- ownership and locks -----------------------------------------------------------------------

def test_ownership_is_probed_without_taking_the_lock(conn, db_url):
    key = locks.job_key(uuid.uuid4())
    with psycopg.connect(db_url, autocommit=True) as owner:
        locks.hold_shared(owner, key)
        with conn.transaction():
            assert locks.held(conn, key)
            assert locks.held(conn, key, pid=owner.info.backend_pid, exclusive=False)
            assert not locks.held(conn, key, exclude_pid=owner.info.backend_pid)
            mine = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND "
                                "pid = pg_backend_pid()").fetchone()[0]
        assert mine == 0
        locks.release_shared(owner, key)
        with conn.transaction():
            assert not locks.held(conn, key)


def test_lock_keys_are_parameters_never_spliced_into_sql():
    """Every advisory lock call passes its key as a parameter (%s), never in an f-string."""
    for path in (ROOT / "service").rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if "advisory" in line and re.search(r"\bf[\"']", line):
                pytest.fail(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")


def test_recovery_and_resume_probes_never_disturb_a_starting_job(conn, db_url):
    """Probing ownership once TOOK the job's lock for an instant (pg_try_advisory_xact_lock):
    a job starting at that instant failed with 'being run by another process'. Now probes read
    pg_locks; a starting job is never disturbed, and never taken for an orphan."""
    owner = psycopg.connect(db_url, autocommit=True)  # as a runner: owned before created
    for n in range(3):
        job_id = str(uuid.uuid4())
        locks.hold_shared(owner, locks.job_key(job_id))
        created = jobs.create_job(conn, GenerateRequest.from_dict(
            {"name": f"probed-{n}", "num_samples": 2000, "seed": n}), job_id=job_id)
        stop = threading.Event()
        seen = []

        def probe():
            with psycopg.connect(db_url) as other:
                while not stop.is_set():
                    seen.extend(jobs.recover_interrupted(other))
                    try:
                        jobs.prepare_resume(other, created["job_id"])
                    except ConflictError:
                        pass

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            result = run_job(db_url, created["job_id"])
        finally:
            stop.set()
            prober.join()
        assert result.status == "completed" and seen == []
    owner.close()


def test_a_lost_dataset_lock_stops_the_job_before_it_writes(conn, db_url):
    """The job's lock connection is killed while batch 1 waits to write its counters (the test
    holds the dataset's row): batch 1 then finds the lock gone and rolls back; the job fails
    saying so, and nothing is written after the lock was lost. Before, the lock connection was
    never checked during a job."""
    base = submit(conn, name="locked", num_samples=5, seed=3)
    run_job(db_url, base["job_id"])
    created = submit(conn, expand_dataset_id=base["dataset_id"], num_samples=20_000,
                     batch_size=2000)
    blocker = psycopg.connect(db_url)
    killed = threading.Event()

    def lose_the_lock():
        with psycopg.connect(db_url, autocommit=True) as admin:
            deadline = time.monotonic() + 60
            while admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = "
                                "current_database() AND wait_event_type = 'Lock' AND query "
                                "LIKE 'UPDATE heimdall.synthetic_datasets%'").fetchone()[0] == 0:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            key = locks.dataset_key(base["dataset_id"])
            unsigned = key & (2**64 - 1)
            pid = admin.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND "
                                "classid = %s::bigint::oid AND objid = %s::bigint::oid",
                                (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()[0]
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
            while locks.held(admin, key):
                time.sleep(0.01)
        killed.set()
        blocker.rollback()  # lets batch 1 write its counters: it must find the lock gone

    def hold_the_row(event):
        if event["type"] == "progress":  # the job has started; batch 1 is not written yet
            blocker.execute("SELECT 1 FROM heimdall.synthetic_datasets WHERE id = %s "
                            "FOR NO KEY UPDATE",  # the counters UPDATE waits; COPY (FK) does not
                            (base["dataset_id"],))
            threading.Thread(target=lose_the_lock).start()

    try:
        with pytest.raises(JobError, match="lock on dataset .* was lost"):
            run_job(db_url, created["job_id"], on_event=hold_the_row)
    finally:
        blocker.close()
    assert killed.is_set()
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "failed" and job["generated"] == 0
    assert dataset_counts(conn, base["dataset_id"]) == (5, 5, 5)


# ---- quality aggregates describe exactly the committed rows ------------------------------------

AUDIT = """
CREATE TABLE commit_audit (num_samples bigint, metric_samples bigint);
CREATE FUNCTION audit_dataset() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO commit_audit VALUES (NEW.num_samples, (NEW.quality_metrics->>'samples')::bigint);
    RETURN NULL;
END $$;
CREATE TRIGGER audit AFTER UPDATE ON heimdall.synthetic_datasets
    FOR EACH ROW EXECUTE FUNCTION audit_dataset();
"""


def audited(conn) -> list[tuple]:
    """Every committed update of a dataset row: (num_samples, quality_metrics.samples)."""
    with conn.transaction():
        return conn.execute("SELECT * FROM commit_audit").fetchall()


@pytest.mark.parametrize("stop", ["completed", "cancelled", "failed"])
def test_quality_metrics_match_the_committed_rows_after_every_commit(conn, db_url, monkeypatch,
                                                                     stop):
    """The quality sums were handed to psycopg as a live dict, serialized by a lane after the
    producer had added the NEXT batch: a commit carried the next batch's sums (its sample
    count ran ahead of num_samples). An audit trigger records every committed update."""
    with conn.transaction():
        conn.execute(AUDIT)
    created = submit(conn, name=f"quality-{stop}", num_samples=30_000, seed=4, batch_size=2000)
    on_event = None
    if stop == "cancelled":
        def on_event(event):
            if event["type"] == "batch" and event["batch"] == 6:
                with psycopg.connect(db_url) as other:
                    jobs.request_cancel(other, created["job_id"])
    elif stop == "failed":
        real, calls = pipeline.copy_batch, itertools.count(1)

        def failing(cur, buf, **kw):
            if next(calls) == 8:
                raise OSError("disk on fire")
            return real(cur, buf, **kw)
        monkeypatch.setattr(pipeline, "copy_batch", failing)
    try:
        result = run_job(db_url, created["job_id"], on_event=on_event)
        assert result.status == stop
    except JobError:
        assert stop == "failed"
    trail = audited(conn)
    assert len(trail) >= 6
    assert all(n == m for n, m in trail), trail
    n, m, actual = dataset_counts(conn, created["dataset_id"])
    assert n == m == actual == jobs.get_job(conn, created["job_id"])["generated"]


def test_quality_metrics_match_the_committed_rows_after_a_kill(conn, db_url):
    """The same when the process is SIGKILLed mid-job."""
    with conn.transaction():
        conn.execute(AUDIT)
    created = submit(conn, name="quality-kill", num_samples=400_000, seed=5, batch_size=4000)
    code = ("import sys; from heimdall_synth.service.engine.loop import run_job; "
            "run_job(sys.argv[1], sys.argv[2])")
    child = subprocess.Popen([sys.executable, "-c", code, db_url, created["job_id"]])
    try:
        deadline = time.monotonic() + 120
        while dataset_counts(conn, created["dataset_id"])[0] < 20_000:
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    trail = audited(conn)
    assert len(trail) >= 5 and all(n == m for n, m in trail), trail
    n, m, actual = dataset_counts(conn, created["dataset_id"])
    assert n == m == actual > 0


# ---- edge paths ---------------------------------------------------------------------------------

@pytest.mark.parametrize("module, failing_call", [(loop, 2), (pipeline, 2)])
def test_a_connection_that_fails_to_open_leaks_none(conn, db_url, monkeypatch, module,
                                                    failing_call):
    """The loop opens its lock connection and its own (loop.connect), then one per ingest lane
    (pipeline.connect). When one of them failed to open, those opened before it stayed open."""
    created = submit(conn, name=f"leak-{module.__name__}", num_samples=100)
    real, calls = module.connect, itertools.count(1)

    def flaky(*args, **kw):
        if next(calls) == failing_call:
            raise psycopg.OperationalError("connection refused (test)")
        return real(*args, **kw)

    monkeypatch.setattr(module, "connect", flaky)
    with pytest.raises((JobError, psycopg.OperationalError)) as raised:
        run_job(db_url, created["job_id"])
    # Checked while the error (and any connection its frames hold) is still alive; a closed
    # connection's backend exits a moment after the close, a leaked one never does.
    deadline = time.monotonic() + 10
    while connections(conn) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert connections(conn) == 0, raised.value


def test_a_listener_that_raises_changes_nothing(conn, db_url):
    """A progress callback that raises (a closed stderr) once left its committed batch out of
    the job's count, and the job failed with a false 'count mismatch'."""
    created = submit(conn, name="listener", num_samples=20_000, seed=6, batch_size=3000)

    def broken(event):
        raise OSError(5, "Input/output error")

    result = run_job(db_url, created["job_id"], on_event=broken)
    assert (result.status, result.generated, result.final_count) == ("completed", 20_000, 20_000)
    assert dataset_counts(conn, created["dataset_id"]) == (20_000,) * 3


def test_a_resumed_jobs_duration_leaves_out_the_time_it_was_stopped(conn, db_url):
    """duration_s ran from the first start to the end, stopped time included."""
    created = submit(conn, name="duration", num_samples=40_000, seed=7, batch_size=2000)

    def cancel_at_batch_2(event):
        if event["type"] == "batch" and event["batch"] == 2:
            with psycopg.connect(db_url) as other:
                jobs.request_cancel(other, created["job_id"])

    t0 = time.monotonic()
    assert run_job(db_url, created["job_id"], on_event=cancel_at_batch_2).status == "cancelled"
    time.sleep(2.0)
    jobs.prepare_resume(conn, created["job_id"])
    assert run_job(db_url, created["job_id"]).status == "completed"
    wall = time.monotonic() - t0
    shown = job_json(jobs.get_job(conn, created["job_id"]))
    assert 0 < shown["duration_s"] < wall - 1.5
    assert shown["samples_per_second"] == pytest.approx(40_000 / shown["duration_s"])


def test_datasets_sharing_a_recording_prefix_are_redrawn_at_creation(conn, db_url, monkeypatch):
    """Recording ids start with the first 8 bytes of the dataset id; two datasets created in
    the same millisecond by two processes could share them, and the second one's COPY failed
    later. The clash is now refused at creation, and a new id drawn."""
    first = submit(conn, name="prefix-a", num_samples=50, seed=1)
    taken = uuid.UUID(first["dataset_id"])
    real, calls = ids.new_dataset_id, itertools.count()

    def clashing():
        if next(calls) == 0:
            return uuid.UUID(bytes=taken.bytes[:8] + os.urandom(8))
        return real()

    monkeypatch.setattr(datasets, "new_dataset_id", clashing)
    second = submit(conn, name="prefix-b", num_samples=50, seed=1)
    assert uuid.UUID(second["dataset_id"]).bytes[:8] != taken.bytes[:8]
    for created in (first, second):
        assert run_job(db_url, created["job_id"]).final_count == 50


def test_use_gpu_true_without_a_device_is_refused_and_the_cpu_is_recorded(conn, db_url):
    """This machine has no CUDA device (tests/test_gpu_sim.py runs the simulator's)."""
    with pytest.raises(ConfigError) as refused:
        GenerateRequest.from_dict({"name": "gpu", "num_samples": 5, "use_gpu": True})
    assert refused.value.field == "use_gpu" and "has none" in str(refused.value)
    for value in (None, False):
        created = submit(conn, name=f"gpu-{value}", num_samples=5, use_gpu=value)
        result = run_job(db_url, created["job_id"])
        assert result.device.startswith("cpu")
        assert jobs.get_job(conn, created["job_id"])["device"].startswith("cpu")


def test_generation_config_without_arguments_is_the_defaults():
    assert GenerationConfig() == GenerationConfig.from_dict({})
    assert GenerationConfig(frequency_mhz=433.0).frequency_mhz == 433.0
    with pytest.raises(ConfigError):
        GenerationConfig(frequency_mhz="433")


# ---- orphans: jobs whose process is gone -------------------------------------------------------

RUNNER_SCRIPT = r"""
import sys, time
from heimdall_synth.service.engine.request import GenerateRequest
from heimdall_synth.service.engine.runner import JobRunner
from heimdall_synth.service.storage.database import connect
url = sys.argv[1]
runner = JobRunner(url, workers=1)
with connect(url) as conn:
    for n, size in enumerate((5_000_000, 50, 50)):
        runner.create(conn, GenerateRequest.from_dict({"name": f"orphan-{n}", "num_samples": size}))
print("created", flush=True)
time.sleep(600)
"""


def test_jobs_waiting_in_a_killed_runner_are_recovered_interrupted(conn, db_url):
    """A service SIGKILLed while jobs waited in its pool: they stayed 'pending' forever (the
    recovery only looked at running and queued jobs, and at pending ones a minute old); their
    dataset could not be deleted and a cancel set a flag nobody read. Now every active job
    whose owner is gone ends interrupted, and can be resumed or cancelled."""
    child = subprocess.Popen([sys.executable, "-c", RUNNER_SCRIPT, db_url],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "created"
        deadline = time.monotonic() + 60
        while [j["status"] for j in jobs.list_jobs(conn)].count("running") != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert jobs.recover_interrupted(conn) == []  # all three are owned
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    listed = {j["id"]: j for j in jobs.list_jobs(conn)}
    assert sorted(j["status"] for j in listed.values()) == ["pending", "pending", "running"]
    wait_for_locks_released(db_url)
    assert sorted(jobs.recover_interrupted(conn)) == sorted(str(i) for i in listed)
    assert {j["status"] for j in jobs.list_jobs(conn)} == {"interrupted"}
    by_size = {j["requested"]: str(j["id"]) for j in listed.values()}
    big, small = by_size[5_000_000], [str(j["id"]) for j in listed.values()
                                      if j["requested"] == 50]
    assert jobs.request_cancel(conn, big)["status"] == "cancelled"
    jobs.prepare_resume(conn, small[0])
    assert run_job(db_url, small[0]).final_count == 50
    assert jobs.request_cancel(conn, small[1])["status"] == "cancelled"
    for job in jobs.list_jobs(conn):
        datasets.delete_dataset(conn, job["dataset_id"])  # no active job holds them


def test_a_cancel_of_an_unowned_pending_job_ends_it_at_once(conn):
    created = submit(conn, name="unowned", num_samples=5)  # created, never run, nobody owns it
    job = jobs.request_cancel(conn, created["job_id"])
    assert job["status"] == "cancelled" and job["cancel_recorded_at_count"] == 0


def server_ready(data_dir) -> bool:
    """postmaster.pid's status line says the embedded server accepts connections."""
    try:
        return "ready" in (data_dir / "postmaster.pid").read_text().split()
    except FileNotFoundError:
        return False


def test_sigterm_while_serve_starts_leaves_no_database_running(tmp_path):
    """``serve`` set SIGTERM to its default action, and installed its own handler only after
    the embedded PostgreSQL had started: a SIGTERM in between killed the process and left the
    server running. Now the start is completed, then the service stops cleanly."""
    data_dir = tmp_path / "pgdata"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["HEIMDALL_SYNTH_DATA_DIR"] = str(data_dir)
    proc = subprocess.Popen([sys.executable, "-m", "heimdall_synth.service.cli", "serve",
                             "--port", str(free_port())], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not server_ready(data_dir):  # started; serve still migrates, recovers, imports
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        assert not stop_server(data_dir), "the embedded PostgreSQL was left running"
    finally:
        if proc.poll() is None:
            proc.kill()
        stop_server(data_dir)


# ---- one runner, two doors ---------------------------------------------------------------------

def test_both_doors_run_jobs_through_the_one_runner():
    """The CLI and the HTTP service never call the generation loop themselves: both create,
    resume and cancel through engine.runner.JobRunner."""
    for door in ("cli", "http"):
        text = "\n".join(p.read_text() for p in (ROOT / "service" / door).rglob("*.py"))
        assert "run_job" not in text, door
        assert "JobRunner" in text and "runner.create(" in text and "runner.resume(" in text, door


def test_queued_has_one_meaning_and_one_message(conn, db_url):
    """A job waiting behind another on its dataset is 'queued', with the same message whether
    it waits in its runner's line or, from another process's runner, on the dataset's lock."""
    from heimdall_synth.service.engine.runner import JobRunner
    base = submit(conn, name="queue", num_samples=5)
    run_job(db_url, base["job_id"])
    first_runner, second_runner = JobRunner(db_url, workers=2), JobRunner(db_url, workers=1)
    try:
        def expansion(runner):
            created, entry = runner.create(conn, GenerateRequest.from_dict(
                {"expand_dataset_id": base["dataset_id"], "num_samples": 5_000_000}))
            return created["job_id"], entry

        running, _ = expansion(first_runner)
        deadline = time.monotonic() + 60
        while jobs.get_job(conn, running)["status"] != "running":
            assert time.monotonic() < deadline
            time.sleep(0.02)
        in_line, _ = expansion(first_runner)         # behind it in the same runner
        elsewhere, entry = expansion(second_runner)  # another runner: waits on the lock
        expected = states.queued_message(running)
        for job_id in (in_line, elsewhere):
            while jobs.get_job(conn, job_id)["status"] != "queued":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            assert jobs.get_job(conn, job_id)["progress_message"] == expected
    finally:
        first_runner.close()
        second_runner.close()
    statuses = {j["id"]: j["status"] for j in jobs.list_jobs(conn)}
    assert statuses[uuid.UUID(running)] == statuses[uuid.UUID(in_line)] == "interrupted"
    assert statuses[uuid.UUID(elsewhere)] == "interrupted"


def test_a_runner_that_reconnects_takes_its_owner_locks_again(conn, db_url):
    """The runner's connection holds the owner locks of the jobs waiting in it; a reconnect
    silently dropped them, so a job still waiting there was then taken for an orphan."""
    from heimdall_synth.service.engine.runner import JobRunner
    runner = JobRunner(db_url, workers=1)
    try:
        request = GenerateRequest.from_dict
        running, _ = runner.create(conn, request({"name": "busy", "num_samples": 5_000_000}))
        waiting, _ = runner.create(conn, request({"name": "waiting", "num_samples": 10}))
        with conn.transaction():
            conn.execute("SELECT pg_terminate_backend(%s)", (runner._owner.info.backend_pid,))
        deadline = time.monotonic() + 30
        while not runner._owner.closed and not runner._owner.broken:
            try:
                runner._owner.execute("SELECT 1")
            except psycopg.Error:
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        runner.create(conn, request({"name": "third", "num_samples": 10}))  # reconnects
        assert jobs.recover_interrupted(conn) == []
        assert jobs.get_job(conn, waiting["job_id"])["status"] == "pending"
    finally:
        runner.close()
