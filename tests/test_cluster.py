"""Jobs on a real local Dask cluster (worker processes, not threads): the rows (and IQ) are
exactly an in-process run's, the operators' sessions keep their exact counts, a worker killed
mid-shard and a coordinator killed mid-job end as the contracts say, and a worker of another
version is refused before anything is written."""

from __future__ import annotations

import os
import signal
import time

import distributed
import pytest

from heimdall_synth.service.engine import cluster
from heimdall_synth.service.engine.loop import JobError, run_job
from heimdall_synth.service.storage import datasets, jobs
from tests.helpers import (counts, generate, iq_row_columns, killed_after, row_digests,
                           rows, stored_captures, submit)

SIGNALS = {"dataset_type": "iq_raw", "iq_sample_rate_hz": 13_000, "iq_duration_ms": 10,
           "num_chunks": 2}
STORED = dict(SIGNALS, iq_storage="postgres")
#: Captures four times longer: shards of a few tenths of a second, so that a worker is caught
#: in the middle of one.
LONGER = dict(STORED, iq_sample_rate_hz=25_000, iq_duration_ms=40)
TYPES = [pytest.param({}, id="feature_based"), pytest.param(SIGNALS, id="iq_raw")]


@pytest.fixture(scope="module")
def scheduler():
    """A local cluster of two single-threaded worker processes, shared by the module."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as local:
        yield local.scheduler_address


def iq_rows(conn, dataset_id):
    return rows(conn, dataset_id, iq_row_columns())


def test_rows_and_iq_equal_an_in_process_run(conn, db_url, scheduler):
    """C4 across processes: feature_based rows, and iq_raw rows, features and stored IQ,
    identical to the same jobs run in-process; the job records the cluster."""
    for name, fields, n in (("fb", {}, 3000), ("iq", STORED, 40)):
        here, _ = generate(conn, db_url, f"{name}-here", n, seed=5, **fields)
        made = submit(conn, name=f"{name}-there", num_samples=n, seed=5, **fields)
        events = []
        result = run_job(db_url, made["job_id"], cluster=scheduler, on_event=events.append)
        assert result.status == "completed" and result.final_count == n
        assert result.device == f"dask: {scheduler} (2 workers)"
        batches = [e for e in events if e["type"] == "batch"]
        assert batches and batches[-1]["workers"] == 2 and batches[-1]["shards_done"] >= 1
        assert iq_rows(conn, made["dataset_id"]) == iq_rows(conn, here)
        assert stored_captures(conn, made["dataset_id"]) == stored_captures(conn, here)
        assert datasets.get_dataset(conn, made["dataset_id"])["devices"] == [result.device]


@pytest.mark.parametrize("workers", [1, 4])
def test_one_or_four_local_workers_store_the_same_rows(conn, db_url, workers):
    here, _ = generate(conn, db_url, f"here-{workers}", 30, seed=8, **STORED)
    made = submit(conn, name=f"there-{workers}", num_samples=30, seed=8, **STORED)
    result = run_job(db_url, made["job_id"], workers=workers)
    assert result.final_count == 30
    assert result.device.endswith(f"({workers} worker{'s' if workers > 1 else ''})")
    assert iq_rows(conn, made["dataset_id"]) == iq_rows(conn, here)
    assert stored_captures(conn, made["dataset_id"]) == stored_captures(conn, here)


@pytest.mark.parametrize("fields", TYPES)
def test_the_operators_sessions_through_the_cluster(conn, db_url, scheduler, fields):
    """5 samples, an expansion by 1000, then a strict expansion that stops saying why: exact
    counts at every step, and the rows of the same sessions run in-process."""
    def session(prefix, options):
        made = submit(conn, name=f"{prefix}-ops", num_samples=5, seed=3, **fields)
        assert run_job(db_url, made["job_id"], **options).final_count == 5
        grown = submit(conn, expand_dataset_id=made["dataset_id"], num_samples=1000)
        assert run_job(db_url, grown["job_id"], **options).final_count == 1005
        strict = submit(conn, expand_dataset_id=made["dataset_id"], num_samples=50,
                        min_snr_db=30, min_receivers=7, max_gdop=10, max_attempts=400)
        stopped = run_job(db_url, strict["job_id"], **options)
        assert stopped.status == "failed" and stopped.stopped_reason == "max_attempts"
        assert "min_receivers" in stopped.message and stopped.generated < 50
        meta, actual = counts(conn, made["dataset_id"])
        assert meta == actual == 1005 + stopped.generated
        return made["dataset_id"]

    there = session("there", {"cluster": scheduler})
    here = session("here", {})
    assert iq_rows(conn, there) == iq_rows(conn, here)


@pytest.mark.parametrize("victims", ["one", "all"])
def test_a_worker_killed_mid_shard_changes_nothing(conn, db_url, scheduler, victims, caplog):
    """SIGKILL a worker process while it holds shards of the job (or every worker: the job's
    inputs, scattered to the workers, die with them; Dask keeps one copy of them, so one dead
    worker can take them too): the shards run again, the inputs sent again when lost, and
    the dataset ends exactly as without the kill."""
    client = distributed.Client(scheduler)
    try:
        pids = client.run(os.getpid)  # worker address -> pid
        made = submit(conn, name=f"kill-{victims}", num_samples=400, seed=12, batch_size=32,
                      **LONGER)
        lost, killed = [], set()

        def on_event(event):
            if event["type"] == "batch" and not lost:  # until a worker holds shards
                for address, keys in client.processing().items():
                    shards = [k for k in keys if str(k).startswith("shard-")]
                    if shards:  # a worker in the middle of the job's shards
                        for victim in (pids if victims == "all" else [address]):
                            os.kill(pids[victim], signal.SIGKILL)
                            killed.add(pids[victim])
                        lost.extend(shards)
                        return

        result = run_job(db_url, made["job_id"], cluster=scheduler, on_event=on_event)
        assert lost and result.final_count == 400
        if victims == "all":  # no copy of the inputs was left: they were sent again
            assert "the cluster lost its inputs" in caplog.text
        deadline = time.monotonic() + 60  # the nannies restart them for the next tests
        while killed & set(client.run(os.getpid).values()) or \
                len(client.scheduler_info()["workers"]) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        client.close()
    here, _ = generate(conn, db_url, f"kill-{victims}-here", 400, seed=12, **LONGER)
    assert iq_rows(conn, made["dataset_id"]) == iq_rows(conn, here)
    assert stored_captures(conn, made["dataset_id"]) == stored_captures(conn, here)


def test_a_killed_coordinator_leaves_nothing_partial_and_resumes_exactly(conn, db_url):
    made = submit(conn, name="kill-coordinator", num_samples=300, seed=4, batch_size=64,
                  **STORED)
    killed_after(conn, db_url, made, 2, timeout=180, workers=2)
    assert datasets.validate_dataset(conn, made["dataset_id"])["ok"]  # captures too
    jobs.prepare_resume(conn, made["job_id"])
    assert run_job(db_url, made["job_id"], workers=2).final_count == 300
    here, _ = generate(conn, db_url, "kill-coordinator-here", 300, seed=4, **STORED)
    assert iq_rows(conn, made["dataset_id"]) == iq_rows(conn, here)
    assert stored_captures(conn, made["dataset_id"]) == stored_captures(conn, here)


def test_a_worker_of_another_version_is_refused_before_anything_is_written(
        conn, db_url, scheduler, monkeypatch):
    made = submit(conn, name="other-version", num_samples=50, seed=1)
    before = row_digests(db_url, made["dataset_id"])
    real = cluster.versions()
    monkeypatch.setattr(cluster, "versions", lambda: dict(real, project_version="0.0.0-other"))
    with pytest.raises(JobError, match="0.0.0-other"):
        run_job(db_url, made["job_id"], cluster=scheduler)
    assert jobs.get_job(conn, made["job_id"])["status"] == "failed"
    assert row_digests(db_url, made["dataset_id"]) == before == []
    assert counts(conn, made["dataset_id"]) == (0, 0)


def test_the_cli_and_the_service_run_jobs_on_a_cluster(db_url, scheduler, tmp_path):
    """--workers N (a local cluster), --cluster ADDRESS and the service's
    HEIMDALL_SYNTH_DASK_SCHEDULER; an unreachable scheduler fails the job saying so, and a bad
    --workers is refused naming it."""
    from tests.helpers import cli, cli_json
    from tests.http_client import ServerProcess
    local = cli_json(db_url, "generate", "--name", "cli-local", "--num-samples", 50,
                     "--workers", 2, timeout=300)
    assert local["generated"] == 50 and local["device"].endswith("(2 workers)")
    there = cli_json(db_url, "generate", "--name", "cli-there", "--num-samples", 50,
                     "--cluster", scheduler, timeout=300)
    assert there["device"] == f"dask: {scheduler} (2 workers)"
    nowhere = cli(db_url, "--json", "generate", "--name", "cli-nowhere", "--num-samples", 5,
                  "--cluster", "tcp://127.0.0.1:9", timeout=300)
    assert nowhere.returncode == 1 and "tcp://127.0.0.1:9" in nowhere.stderr
    assert "connection refused" in nowhere.stderr  # at once, not after the client's timeout
    bad = cli(db_url, "generate", "--name", "cli-bad", "--num-samples", 5, "--workers", "0")
    assert bad.returncode == 2 and "workers" in bad.stderr
    server = ServerProcess(db_url, tmp_path / "server.log",
                           env={"HEIMDALL_SYNTH_DASK_SCHEDULER": scheduler})
    try:
        created = server.client.generate(name="served", num_samples=50)
        job = server.client.wait(created["job_id"], timeout=300)
    finally:
        server.terminate()
    assert job["status"] == "completed" and job["device"] == f"dask: {scheduler} (2 workers)"
