"""The generation loop against a real PostgreSQL: contracts C1-C4 and C6, the operators' cases."""

from __future__ import annotations

import itertools
import threading
import time

import numpy as np
import psycopg
import pytest

from heimdall_synth.kernel import ConfigError
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.engine import pipeline
from heimdall_synth.service.engine.pipeline import consume
from heimdall_synth.service.engine.quality import QualityAggregates
from heimdall_synth.service.engine.stops import progress_text
from heimdall_synth.service.storage.copy_rows import copy_batch
from heimdall_synth.service.engine.loop import JobError, run_job
from heimdall_synth.service.engine.request import ConflictError, GenerateRequest, NotFoundError
from tests.helpers import counts, expand, generate, killed_after, rows, submit, table_sizes

STRICT = {"min_snr_db": 30.0, "min_receivers": 7, "max_gdop": 10.0}


# ---- the operators' three cases ------------------------------------------------------------

@pytest.mark.parametrize("extra", [10, 1000])
def test_expansion_appends_and_counts_agree(conn, db_url, extra):
    dataset_id, first = generate(conn, db_url, "test-expansion-base", 5, tx_power_dbm=5.0,
                                 seed=11)
    assert first.status == "completed" and first.final_count == 5
    before = rows(conn, dataset_id, "*")
    result = expand(conn, db_url, dataset_id, extra)
    assert (result.status, result.stopped_reason) == ("completed", "target_reached")
    assert (result.samples_offset, result.generated, result.final_count) == (5, extra, 5 + extra)
    assert counts(conn, dataset_id) == (5 + extra, 5 + extra)
    after = rows(conn, dataset_id, "*")
    assert after[:5] == before  # the first five rows are untouched, every column
    assert [r[0] for r in rows(conn, dataset_id, "sample_index")] == list(range(5 + extra))
    assert datasets.validate_dataset(conn, dataset_id)["ok"]
    assert progress_text(5, extra, extra) == f"{5 + extra:,} / {5 + extra:,} (continued from 5)"


def test_strict_expansion_stops_with_a_reason_and_loses_nothing(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "base", 5, seed=3)
    before = rows(conn, dataset_id, "*")
    result = expand(conn, db_url, dataset_id, 1000, **STRICT)
    job = jobs.list_jobs(conn, dataset_id)[0]
    assert (result.status, job["status"]) == ("failed", "failed")
    assert job["stopped_reason"] == result.stopped_reason == "max_attempts"
    assert job["attempted"] == 20_000 and 0 < job["generated"] < 1000
    print(result.message)
    assert "min_receivers" in job["stop_message"] and "lower min_receivers" in result.message
    breakdown = job["rejections"]
    assert sum(breakdown.values()) + job["generated"] == job["attempted"]
    assert max(breakdown, key=breakdown.get) == "min_receivers"
    n = 5 + job["generated"]
    assert counts(conn, dataset_id) == (n, n)
    assert rows(conn, dataset_id, "*")[:5] == before
    assert datasets.validate_dataset(conn, dataset_id)["ok"]


# ---- C4: determinism at the database ---------------------------------------------------------

def test_five_then_a_thousand_equals_1005_at_once(conn, db_url):
    split, _ = generate(conn, db_url, "split", 5, seed=2026)
    expand(conn, db_url, split, 1000)
    whole, _ = generate(conn, db_url, "whole", 1005, seed=2026)
    assert rows(conn, split) == rows(conn, whole)
    assert len(rows(conn, whole)) == 1005


def test_batch_size_and_threads_do_not_change_rows(conn, db_url):
    a, _ = generate(conn, db_url, "a", 3000, seed=77, use_random_receivers=True)
    created = submit(conn, name="b", num_samples=3000, seed=77, use_random_receivers=True,
                     batch_size=777)
    run_job(db_url, created["job_id"], threads=2)
    created = submit(conn, name="c", num_samples=3000, seed=77, use_random_receivers=True,
                     batch_size=50_000)
    run_job(db_url, created["job_id"], threads=1)
    reference_rows = rows(conn, a)
    assert rows(conn, created["dataset_id"]) == reference_rows
    b = datasets.find_dataset(conn, "b")["id"]
    assert rows(conn, b) == reference_rows


def test_dataset_without_seed_gets_a_stored_random_one(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "unseeded", 10)
    ds = datasets.get_dataset(conn, dataset_id)
    assert 0 <= ds["seed"] < 2**63
    other, _ = generate(conn, db_url, "seeded-same", 10, seed=ds["seed"])
    assert rows(conn, other) == rows(conn, dataset_id)


# ---- C3: counts agree at every commit --------------------------------------------------------

def test_counts_agree_at_every_commit_seen_from_another_connection(conn, db_url):
    created = submit(conn, name="watched", num_samples=20_000, seed=5, batch_size=2000)
    seen, stop = [], threading.Event()

    def watch():
        with psycopg.connect(db_url, autocommit=True) as other:
            while not stop.is_set():
                seen.append(other.execute(
                    "SELECT num_samples, (SELECT count(*) FROM heimdall.measurement_features f "
                    "WHERE f.dataset_id = d.id), (SELECT generated + coalesce(samples_offset, 0)"
                    " FROM heimdall.generation_jobs j WHERE j.id = %s) FROM "
                    "heimdall.synthetic_datasets d WHERE d.id = %s",
                    (created["job_id"], created["dataset_id"])).fetchone())

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        result = run_job(db_url, created["job_id"])
    finally:
        stop.set()
        watcher.join()
    assert result.final_count == 20_000
    distinct = sorted(set(seen))
    print(f"{len(seen)} observations, {len(distinct)} distinct committed states")
    assert len(distinct) >= 3  # it really watched the job go through several commits
    assert all(meta == actual == job for meta, actual, job in seen)


def test_killed_between_batches_then_resumed(conn, db_url):
    created = submit(conn, name="killed", num_samples=6000, seed=9, batch_size=1000)
    killed_after(conn, db_url, created, 3)
    committed = rows(conn, created["dataset_id"], "*")
    jobs.prepare_resume(conn, created["job_id"])
    result = run_job(db_url, created["job_id"])
    assert result.status == "completed" and result.final_count == 6000
    assert rows(conn, created["dataset_id"], "*")[:len(committed)] == committed
    straight, _ = generate(conn, db_url, "straight", 6000, seed=9)
    assert rows(conn, created["dataset_id"]) == rows(conn, straight)


def test_recovery_leaves_a_live_job_alone(conn, db_url):
    created = submit(conn, name="live", num_samples=30_000, seed=4, batch_size=1000)
    marked, started = [], threading.Event()

    def on_event(event):
        if event["type"] == "batch" and event["batch"] == 2:
            marked.extend(jobs.recover_interrupted(psycopg.connect(db_url)))
            started.set()

    result = run_job(db_url, created["job_id"], on_event=on_event)
    assert started.is_set() and marked == [] and result.status == "completed"


# ---- C1: every stop reason -------------------------------------------------------------------

def test_attempt_budget_is_exact(conn, db_url):
    created = submit(conn, name="budget", num_samples=1000, max_attempts=1234, batch_size=500,
                     **STRICT)
    assert run_job(db_url, created["job_id"]).stopped_reason == "max_attempts"
    job = jobs.get_job(conn, created["job_id"])
    assert (job["status"], job["stopped_reason"], job["attempted"]) == ("failed", "max_attempts",
                                                                          1234)
    assert counts(conn, created["dataset_id"]) == (job["generated"],) * 2


def test_stall_rule_counts_attempts(conn, db_url):
    created = submit(conn, name="stall", num_samples=1000, max_consecutive_rejections=300,
                     batch_size=10_000, min_receivers=7, min_snr_db=40.0)
    result = run_job(db_url, created["job_id"])
    job = jobs.get_job(conn, created["job_id"])
    assert job["stopped_reason"] == result.stopped_reason == "stalled"
    assert "300 attempts in a row" in result.message
    assert job["consecutive_rejections"] == 300  # stopped at the attempt that made 300
    ds = datasets.get_dataset(conn, created["dataset_id"])
    assert ds["next_attempt_index"] == job["attempted"]
    assert counts(conn, created["dataset_id"]) == (job["generated"],) * 2


def test_consume_stops_exactly_at_target_and_at_stall():
    from heimdall_synth.kernel import run_attempts
    batch = run_attempts({}, 1, 0, 500)
    take, consumed, stalled, run = consume(batch, 7, 0, 10_000)
    accepted = [i for i in range(500) if batch.valid[i]]
    assert list(take) == accepted[:7] and consumed == accepted[6] + 1 and not stalled
    strict = run_attempts({"min_receivers": 7, "min_snr_db": 40.0}, 1, 0, 2000)
    take, consumed, stalled, run = consume(strict, 1000, 95, 100)
    assert stalled and run == 100 and consumed <= 2000
    assert not strict.valid[consumed - 5:consumed].any()


def test_no_batch_commits_after_a_cancel_is_recorded(conn, db_url):
    """The cancel contract, counted in commits, not seconds: a cancel request waits for the row
    lock of a batch that is committing right now, and every later batch reads the flag in its
    own transaction and rolls back. So the dataset's count when the request committed is its
    final count. Without the lanes' check, the batch already COPYing on the second lane
    committed after the request (one more batch)."""
    created = submit(conn, name="cancel", num_samples=200_000, seed=1, batch_size=2000)
    recorded = []

    def on_event(event):
        if event["type"] == "batch" and event["batch"] == 2:
            with psycopg.connect(db_url) as other:
                recorded.append(jobs.request_cancel(other, created["job_id"]))

    result = run_job(db_url, created["job_id"], on_event=on_event)
    assert (result.status, result.stopped_reason) == ("cancelled", "cancelled")
    at_request = recorded[0]["cancel_recorded_at_count"]
    assert 0 < result.generated == at_request < 200_000
    assert counts(conn, created["dataset_id"]) == (at_request,) * 2
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "cancelled" and job["generated"] == at_request
    assert [e["batch"] for e in result.events if e["type"] == "batch"][-1] >= 2


def test_an_in_process_cancel_lets_no_later_batch_commit(conn, db_url, monkeypatch):
    """The same with the in-process cancel (Ctrl-C in the CLI, the runner's cancel): once the
    event is set, no batch not yet committing commits. The loop is held in batch 1's event while
    the second lane has batch 2 in flight: batch 2 rolls back. Batch 2 is held before its COPY
    until the cancel is set (on a loaded machine it could otherwise reach its commit before the
    loop reported batch 1: committing before the cancel, as it may)."""
    dataset_id, _ = generate(conn, db_url, "late-batch", 5, seed=12)
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=5000, batch_size=1000)
    cancel = threading.Event()
    real_commit = pipeline.commit_batch

    def held_until_the_cancel(conn, packed, counters, previous, stop):
        if previous is not None:  # every batch after the first of the run
            assert cancel.wait(60), "the loop never reported batch 1"
        return real_commit(conn, packed, counters, previous, stop)

    monkeypatch.setattr(pipeline, "commit_batch", held_until_the_cancel)

    def cancel_at_batch_1(event):
        if event["type"] == "batch" and event["batch"] == 1:
            cancel.set()
            time.sleep(0.3)  # batch 2 reaches its checks meanwhile (it must not commit)

    result = run_job(db_url, created["job_id"], cancel=cancel, on_event=cancel_at_batch_1)
    first = [e for e in result.events if e["type"] == "batch"]
    assert [e["batch"] for e in first] == [1]
    assert result.status == "cancelled" and result.generated == first[0]["saved"]
    assert result.final_count == 5 + result.generated
    job = jobs.get_job(conn, created["job_id"])
    assert job["generated"] == result.generated and job["attempted"] == result.attempted
    assert counts(conn, dataset_id) == (5 + result.generated,) * 2


def test_error_mid_batch_rolls_back_only_that_batch(conn, db_url, monkeypatch):
    created = submit(conn, name="error", num_samples=10_000, seed=8, batch_size=1000)
    real_copy, calls = copy_batch, itertools.count(1)

    def flaky_copy(cur, buf, **kw):
        call = next(calls)  # atomic: the two ingest lanes call this from their own threads
        real_copy(cur, buf, **kw)  # the rows go in ... and the batch fails before its commit
        if call == 3:
            raise OSError("disk on fire")

    monkeypatch.setattr(pipeline, "copy_batch", flaky_copy)
    with pytest.raises(JobError, match="disk on fire"):
        run_job(db_url, created["job_id"])
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "failed" and "disk on fire" in job["error"]
    meta, actual = counts(conn, created["dataset_id"])
    assert meta == actual == job["generated"] > 0
    assert [r[0] for r in rows(conn, created["dataset_id"], "sample_index")] == list(range(meta))
    monkeypatch.setattr(pipeline, "copy_batch", real_copy)
    jobs.prepare_resume(conn, created["job_id"])
    assert run_job(db_url, created["job_id"]).final_count == 10_000
    straight, _ = generate(conn, db_url, "no-error", 10_000, seed=8)
    assert rows(conn, created["dataset_id"]) == rows(conn, straight)


# ---- refusals change nothing -----------------------------------------------------------------

def test_name_taken_is_refused_and_nothing_appended(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "taken", 5)
    sizes = table_sizes(conn)
    with pytest.raises(ConflictError) as err:
        submit(conn, name="taken", num_samples=10)
    assert err.value.code == "name_taken" and err.value.fields == ["name"]
    assert table_sizes(conn) == sizes and counts(conn, dataset_id) == (5, 5)


def test_conflicting_expansion_refused_unless_overridden(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "defined", 5, seed=1)
    sizes = table_sizes(conn)
    with pytest.raises(ConflictError) as err:
        submit(conn, expand_dataset_id=dataset_id, num_samples=5, frequency_mhz=433.0,
               num_chunks=3)
    assert err.value.fields == ["frequency_mhz", "num_chunks"]
    assert table_sizes(conn) == sizes
    # filters may change for one job without override, and are recorded
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=5, min_snr_db=6.0)
    assert created["overrides"] == {"min_snr_db": {"dataset": 3.0, "job": 6.0}}
    run_job(db_url, created["job_id"])
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=5, frequency_mhz=433.0,
                     allow_parameter_override=True)
    assert jobs.get_job(conn, created["job_id"])["overrides"] == {
        "frequency_mhz": {"dataset": 145.0, "job": 433.0}}
    run_job(db_url, created["job_id"])
    assert counts(conn, dataset_id) == (15, 15)
    stored = datasets.get_dataset(conn, dataset_id)["config"]
    assert stored["frequency_mhz"] == 145.0 and stored["min_snr_db"] == 3.0  # dataset unchanged


def test_unknown_dataset_and_bad_values_change_nothing(conn, db_url):
    sizes = table_sizes(conn)
    with pytest.raises(NotFoundError) as err:
        submit(conn, expand_dataset_id="00000000-0000-7000-8000-000000000000", num_samples=5)
    assert err.value.field == "expand_dataset_id"
    for bad, field in [({"num_samples": 0}, "num_samples"), ({"num_samples": "5"}, "num_samples"),
                       ({"frequency_mhz": 0.5}, "frequency_mhz"), ({"bogus": 1}, "bogus"),
                       ({"seed": -1}, "seed"), ({"max_attempts": 2}, "max_attempts"),
                       ({"receivers": []}, "receivers"), ({"name": ""}, "name")]:
        request = {"name": "x", "num_samples": 5, **bad}
        with pytest.raises(ConfigError) as err:
            submit(conn, **request)
        assert err.value.field == field
    with pytest.raises(ConfigError) as err:
        GenerateRequest.from_dict({"num_samples": 5})
    assert err.value.field == "name"
    assert table_sizes(conn) == sizes


# ---- C6: one dataset, one job at a time ------------------------------------------------------

def test_two_jobs_on_one_dataset_run_one_after_the_other(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "shared", 5, seed=6)
    first = submit(conn, expand_dataset_id=dataset_id, num_samples=8000, batch_size=1000)
    second = submit(conn, expand_dataset_id=dataset_id, num_samples=3000, batch_size=1000)
    statuses, results = [], {}

    def run(created):
        results[created["job_id"]] = run_job(db_url, created["job_id"], on_event=lambda e: (
            statuses.append((created["job_id"], e.get("status"))) if e["type"] == "status"
            else None))

    started = threading.Event()
    t1 = threading.Thread(target=lambda: (run(first)))
    t1.start()
    while jobs.get_job(conn, first["job_id"])["status"] != "running":
        time.sleep(0.02)
    t2 = threading.Thread(target=lambda: (started.set(), run(second)))
    t2.start()
    t1.join()
    t2.join()
    assert (second["job_id"], "queued") in statuses
    a, b = results[first["job_id"]], results[second["job_id"]]
    assert a.samples_offset == 5 and b.samples_offset == 5 + 8000
    assert counts(conn, dataset_id) == (11_005, 11_005)
    straight, _ = generate(conn, db_url, "straight", 11_005, seed=6)
    assert rows(conn, dataset_id) == rows(conn, straight)


def test_resume_after_another_job_moved_the_dataset_is_refused_clearly(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "moved", 5, seed=12)
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=5000, batch_size=1000)
    cancel = threading.Event()
    run_job(db_url, created["job_id"], cancel=cancel,
            on_event=lambda e: cancel.set() if e["type"] == "batch" else None)
    expand(conn, db_url, dataset_id, 10)
    jobs.prepare_resume(conn, created["job_id"])
    with pytest.raises(JobError, match="another job wrote to it since"):
        run_job(db_url, created["job_id"])
    job = jobs.get_job(conn, created["job_id"])
    assert job["status"] == "failed" and "new expansion" in job["error"]
    meta, actual = counts(conn, dataset_id)
    assert meta == actual and datasets.validate_dataset(conn, dataset_id)["ok"]


def test_quality_aggregates_skip_infinite_values():
    from heimdall_synth.kernel import run_attempts
    from heimdall_synth.kernel.layout import F_CRB
    batch = run_attempts({}, 1, 0, 200).accepted()
    batch.scalars[0, F_CRB] = float("inf")
    agg = QualityAggregates(None).add(
        QualityAggregates.partial(batch, np.arange(len(batch))))
    assert agg["finite_crb_m"] == len(batch) - 1 and np.isfinite(agg["sum_crb_m"])
    import json
    json.dumps(agg, allow_nan=False)  # what PostgreSQL's jsonb accepts


def test_cancel_before_start_is_honoured_and_orphans_can_resume(conn, db_url):
    created = submit(conn, name="early", num_samples=50, seed=1)
    jobs.request_cancel(conn, created["job_id"])
    result = run_job(db_url, created["job_id"])
    assert (result.status, result.generated) == ("cancelled", 0)
    assert counts(conn, created["dataset_id"]) == (0, 0)
    orphan = submit(conn, name="orphan", num_samples=50, seed=1)  # its creator "died"
    jobs.prepare_resume(conn, orphan["job_id"])
    assert run_job(db_url, orphan["job_id"]).final_count == 50
    with pytest.raises(JobError, match="already completed"):
        run_job(db_url, orphan["job_id"])
    with pytest.raises(ConfigError) as err:
        jobs.get_job(conn, "not-a-uuid")
    assert err.value.field == "job_id"


class CommitsBetweenStatements:
    """A connection that lets a whole expansion commit right after its first statement: what a
    batch committing in the middle of a dataset read looks like, made deterministic."""

    def __init__(self, conn, commit):
        self._conn, self._commit, self.statements = conn, commit, 0

    def execute(self, *args, **kwargs):
        cur = self._conn.execute(*args, **kwargs)
        self.statements += 1
        if self.statements == 1:
            self._commit()
        return cur

    def __getattr__(self, name):
        return getattr(self._conn, name)


@pytest.mark.parametrize("read", ["get_dataset", "list_datasets"])
def test_dataset_views_read_both_counts_from_one_snapshot(conn, db_url, read):
    """The dashboard's 'page that cannot lie': metadata count and COUNT(*) always agree in one
    read, even when a batch commits while the dataset is being read."""
    dataset_id, _ = generate(conn, db_url, "snapshot", 100, seed=4)
    done = []

    def expand_by_50():
        with psycopg.connect(db_url) as other:
            done.append(expand(other, db_url, dataset_id, 50))

    racing = CommitsBetweenStatements(conn, expand_by_50)
    if read == "get_dataset":
        ds = datasets.get_dataset(racing, dataset_id)
    else:
        (ds,) = datasets.list_datasets(racing)
    assert done and done[0].status == "completed"
    assert ds["num_samples"] == ds["actual_count"] == 100   # the snapshot before the expansion
    assert counts(conn, dataset_id) == (150, 150)


def test_storage_size_is_the_row_data_of_every_committed_batch(conn, db_url):
    """storage_size_bytes adds up, batch by batch, to exactly the row data PostgreSQL hands back
    when the dataset's rows are copied out in the same binary format (an independent count)."""
    from heimdall_synth.service.storage.copy_rows import COLUMNS, SIGNATURE, TRAILER
    dataset_id, _ = generate(conn, db_url, "sized", 3000, batch_size=700, seed=8)
    expand(conn, db_url, dataset_id, 1500, batch_size=500)
    with conn.transaction(), conn.cursor() as cur:
        out = bytearray()
        with cur.copy(f"COPY (SELECT {', '.join(COLUMNS)} FROM heimdall.measurement_features "
                      f"WHERE dataset_id = %s) TO STDOUT (FORMAT BINARY)", (dataset_id,)) as copy:
            for chunk in copy:
                out += chunk
    stored = datasets.get_dataset(conn, dataset_id)
    assert stored["actual_count"] == 4500
    assert stored["storage_size_bytes"] == len(out) - len(SIGNATURE) - len(TRAILER) > 4500 * 100


def test_a_batch_that_commits_while_the_job_stops_is_counted(conn, db_url):
    """With two ingest lanes, batch 2 can commit while the loop is still reporting batch 1, and
    the job then stops (here: a cancel recorded after batch 2 committed). Found under load; the
    job once failed with 'count mismatch' because it left such a batch out of its own tally.
    Made deterministic: the loop is held in batch 1's event until batch 2 has committed."""
    dataset_id, _ = generate(conn, db_url, "late-batch", 5, seed=12)
    created = submit(conn, expand_dataset_id=dataset_id, num_samples=5000, batch_size=1000)
    first = []

    def hold_until_batch_2_commits(event):
        if event["type"] == "batch" and event["batch"] == 1:
            first.append(event["saved"])
            deadline = time.monotonic() + 30
            with psycopg.connect(db_url, autocommit=True) as other:
                while (counts(other, dataset_id)[1] == event["committed_count"]
                       and time.monotonic() < deadline):
                    time.sleep(0.01)
                jobs.request_cancel(other, created["job_id"])

    result = run_job(db_url, created["job_id"], on_event=hold_until_batch_2_commits)
    assert result.status == "cancelled" and result.final_count == 5 + result.generated
    assert result.generated > first[0]        # batch 2 committed, and the job counts it
    assert [e["batch"] for e in result.events if e["type"] == "batch"] == [1, 2]
    job = jobs.get_job(conn, created["job_id"])
    assert job["generated"] == result.generated and job["attempted"] == result.attempted
    assert counts(conn, dataset_id) == (5 + result.generated,) * 2