"""SIGKILL soak (contract C5): a job's process is killed at random moments, some of them in the
middle of a COPY; after each kill the committed rows are intact, the counts agree, the indices
are dense with no duplicates, the job is found interrupted and resumed; at the end the dataset
equals, row for row, the same job run without interruption.

The bounded version runs in CI. The soak (at least 20 kills of a 1,000,000-sample job) runs
with ``pytest -m slow tests/test_soak_kill.py -s`` and prints its figures (into
$HEIMDALL_SYNTH_SOAK_RESULTS too, when set); ``python bench/soak.py --record`` runs it and
records them in docs/RELIABILITY.md.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import psycopg
import pytest

from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.engine.loop import run_job
from tests.helpers import (DATA_COLUMNS, counts, generate, publish_soak_figures, submit,
                           wait_for_locks_released)


def _run(url, job_id):
    run_job(url, job_id)


def checksum(conn, dataset_id) -> tuple[int, str]:
    with conn.transaction():
        return conn.execute(
            f"SELECT count(*), md5(string_agg(md5(ROW({DATA_COLUMNS})::text), '' ORDER BY "
            "sample_index)) FROM heimdall.measurement_features WHERE dataset_id = %s",
            (dataset_id,)).fetchone()


def _copy_in_flight(url) -> bool:
    with psycopg.connect(url, autocommit=True) as admin:
        return admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
            "state = 'active' AND query ILIKE 'COPY%%'").fetchone()[0] > 0


def soak(conn, url, samples: int, kills: int, seed: int = 5,
         batch_size: int | None = None) -> dict:
    """Kill the job `kills` times, then let it finish; return the figures."""
    rng = random.Random(seed)
    created = submit(conn, name=f"soak-{samples}", num_samples=samples, seed=seed,
                     **({"batch_size": batch_size} if batch_size else {}))
    job_id, dataset_id = created["job_id"], created["dataset_id"]
    ctx = multiprocessing.get_context("spawn")
    done_kills = mid_copy = 0
    checks = 0
    t0 = time.perf_counter()
    while True:
        child = ctx.Process(target=_run, args=(url, job_id))
        child.start()
        if done_kills < kills:
            # wait until this process runs the job and has committed a batch, then a random
            # moment: a kill before that would test nothing the others do not
            before = jobs.get_job(conn, job_id)["generated"]
            deadline = time.time() + 120
            while time.time() < deadline and child.is_alive():
                job = jobs.get_job(conn, job_id)
                if job["status"] == "running" and job["generated"] > before:
                    break
                time.sleep(0.01)
            # The waits below end early once the job has done half of what it had left when
            # this process started: whatever the machine's load, the kill lands before the
            # job ends (a loaded machine once let it finish first: a kill fewer, a flaky test).
            latest = before + max(1, (samples - before) // 2)

            def may_wait() -> bool:
                return child.is_alive() and jobs.get_job(conn, job_id)["generated"] < latest

            until = time.time() + rng.uniform(0.0, 0.4)
            while time.time() < until and may_wait():
                time.sleep(0.01)
            if rng.random() < 0.5:  # half of the kills wait for a COPY to be in flight
                until = time.time() + 2
                while time.time() < until and not _copy_in_flight(url) and may_wait():
                    time.sleep(0.002)
            caught_copy = _copy_in_flight(url)
            if child.is_alive():
                os.kill(child.pid, signal.SIGKILL)
                done_kills += 1
                mid_copy += caught_copy
            child.join(60)
            meta, actual = counts(conn, dataset_id)
            report = datasets.validate_dataset(conn, dataset_id)
            assert meta == actual and report["ok"], report
            checks += 1
            status = jobs.get_job(conn, job_id)["status"]
            if status == "completed":
                break
            if status == "running":
                wait_for_locks_released(url)  # the killed process's backends exit, async
                assert jobs.recover_interrupted(conn) == [job_id]
                assert jobs.get_job(conn, job_id)["status"] == "interrupted"
            jobs.prepare_resume(conn, job_id)
            continue
        child.join(600)
        assert child.exitcode == 0
        break
    elapsed = time.perf_counter() - t0
    assert jobs.get_job(conn, job_id)["status"] == "completed"
    straight, _ = generate(conn, url, f"soak-straight-{samples}", samples, seed=seed)
    mine, theirs = checksum(conn, dataset_id), checksum(conn, straight)
    assert mine == theirs and mine[0] == samples
    return {"samples": samples, "kills": done_kills, "mid_copy": mid_copy, "checks": checks,
            "rows": mine[0], "checksum": mine[1], "seconds": elapsed}


def test_sigkill_bounded(conn, db_url):
    # batches of 2,000: each run commits several before its kill (the default batches grow to
    # 32,768 attempts, and a 60,000-sample job is then three batches, too few to be killed
    # four times for sure)
    figures = soak(conn, db_url, samples=60_000, kills=4, batch_size=2000)
    print(figures)
    assert figures["kills"] == 4


@pytest.mark.slow
def test_sigkill_soak(conn, db_url):
    figures = soak(conn, db_url, samples=1_000_000, kills=20, seed=11)
    assert figures["kills"] >= 20
    publish_soak_figures("sigkill", figures)
