"""iq_raw datasets end to end against a real PostgreSQL: contracts C1-C6 with signals, the IQ
read back (regenerated or stored, the same values), validate, delete, and the exports.

Captures are kept short here (25 kHz x 20 ms: 500 IQ samples per receiver) so that a thousand
samples take a second or two; the defaults' 50 kHz x 200 ms are exercised by the HTTP
operators' test and by bench/iq.py.
"""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import psycopg
import pytest

from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS
from heimdall_synth.service.engine.loop import run_job
from heimdall_synth.service.engine.request import ConflictError, NotIQError
from heimdall_synth.service.engine.signals import sample_blocks, sample_signal
from heimdall_synth.service.storage import datasets, jobs
from heimdall_synth.service.storage.capture_rows import decode_capture
from tests.helpers import (counts, expand, generate, iq_row_columns, killed_after, rows,
                           stored_captures, submit)

SHORT = {"dataset_type": "iq_raw", "iq_sample_rate_hz": 25_000, "iq_duration_ms": 20}
STORED = {**SHORT, "iq_storage": "postgres"}
IQ_ROW_COLUMNS = iq_row_columns()
STORAGES = [pytest.param(SHORT, id="regenerate"), pytest.param(STORED, id="postgres")]
#: SHA-256 of the served IQ (complex64) of the first 3 samples of an iq_raw dataset of seed 2026
#: with SHORT's capture: a change to the signals, their storage or their reading changes it
#: (and is a new model version: docs/SIGNALS.md).
GOLDEN_DATASET_IQ = {
    "cf32": "0ad51b659e0318b38a4b4c4d29f97de2eb6c9350aa2f9c376c1f3f5ae3e4cbe2",
    "ci16": "8cbc63b791447507ca797c63d1ee5f636aa9591151c8a72ea163c824e6d5532b",
}


def dataset_iq(conn, dataset_id) -> np.ndarray:
    """Every sample's IQ as a reader gets it, (samples, slots, capture)."""
    ds = datasets.get_dataset(conn, dataset_id, with_count=False)
    return np.concatenate([block for _, block, _ in sample_blocks(conn, ds, block=64)])


def digest(x: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(x, np.complex64).tobytes()).hexdigest()


# ---- C1 exact target, C3 counts (rows and captures) agree ------------------------------------

@pytest.mark.parametrize("fields", STORAGES)
def test_a_job_makes_exactly_its_samples_with_their_iq(conn, db_url, fields):
    dataset_id, result = generate(conn, db_url, "iq", 300, seed=5, **fields)
    assert (result.status, result.stopped_reason, result.final_count) == (
        "completed", "target_reached", 300)
    assert counts(conn, dataset_id) == (300, 300)
    report = datasets.validate_dataset(conn, dataset_id)
    assert report["ok"] and report["iq_captures_agree"]
    receivers = sum(r[0] for r in rows(conn, dataset_id, "num_receivers_in_sample"))
    stored = len(stored_captures(conn, dataset_id))
    assert (report["iq_captures_expected"], stored) == (
        (receivers, receivers) if fields is STORED else (0, 0))
    # every row carries the 64 features measured from its IQ, one value per receiver
    for row in rows(conn, dataset_id, "cardinality(rx_id), " + ", ".join(IQ_FEATURE_COLUMNS)):
        assert all(len(values) == row[0] for values in row[1:])
    ds = datasets.get_dataset(conn, dataset_id)
    assert ds["dataset_type"] == "iq_raw" and ds["storage_size_bytes"] > 0


def test_the_stored_captures_are_the_regenerated_iq(conn, db_url):
    """postgres and regenerate datasets of one seed: the same rows, and the captures in the
    table decode to exactly the IQ that regeneration gives (regenerated equals stored)."""
    kept, _ = generate(conn, db_url, "kept", 40, seed=21, **STORED)
    again, _ = generate(conn, db_url, "again", 40, seed=21, **SHORT)
    assert rows(conn, kept, IQ_ROW_COLUMNS) == rows(conn, again, IQ_ROW_COLUMNS)
    regenerated = dataset_iq(conn, again)
    table = np.zeros_like(regenerated)
    with conn.transaction():
        for index, receiver, fmt, scale, data in conn.execute(
                "SELECT sample_index, receiver, format, scale, iq FROM heimdall.iq_captures "
                "WHERE dataset_id = %s", (kept,)):
            table[index, receiver] = decode_capture(data, fmt, scale)
    assert np.array_equal(table, regenerated)
    assert np.array_equal(dataset_iq(conn, kept), regenerated)
    one = sample_signal(conn, kept, 7)
    assert np.array_equal(one.iq, regenerated[7, :one.iq.shape[0]])
    assert np.array_equal(sample_signal(conn, again, 7).iq, one.iq)


@pytest.mark.parametrize("fmt", ["cf32", "ci16"])
def test_golden_dataset_iq(conn, db_url, fmt):
    dataset_id, _ = generate(conn, db_url, f"golden-{fmt}", 3, seed=2026, iq_format=fmt, **SHORT)
    assert digest(dataset_iq(conn, dataset_id)) == GOLDEN_DATASET_IQ[fmt]


def test_budget_and_cancel_stop_iq_jobs_with_their_reason(conn, db_url):
    created = submit(conn, name="budget", num_samples=400, max_attempts=500, batch_size=100,
                     min_snr_db=30.0, min_receivers=7, max_gdop=10.0, **STORED)
    assert run_job(db_url, created["job_id"]).stopped_reason == "max_attempts"
    job = jobs.get_job(conn, created["job_id"])
    assert (job["status"], job["attempted"]) == ("failed", 500)
    assert counts(conn, created["dataset_id"]) == (job["generated"],) * 2
    assert datasets.validate_dataset(conn, created["dataset_id"])["ok"]

    created = submit(conn, name="cancelled", num_samples=100_000, seed=1, batch_size=64,
                     **STORED)
    recorded = []

    def on_event(event):
        if event["type"] == "batch" and event["batch"] == 2:
            with psycopg.connect(db_url) as other:
                recorded.append(jobs.request_cancel(other, created["job_id"]))

    result = run_job(db_url, created["job_id"], on_event=on_event)
    assert (result.status, result.stopped_reason) == ("cancelled", "cancelled")
    assert 0 < result.generated == recorded[0]["cancel_recorded_at_count"] < 100_000
    assert counts(conn, created["dataset_id"]) == (result.generated,) * 2
    assert datasets.validate_dataset(conn, created["dataset_id"])["ok"]


# ---- C2 append only ---------------------------------------------------------------------------

def test_captures_are_append_only_and_leave_with_their_dataset(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "append", 5, seed=3, **STORED)
    for statement in ("UPDATE heimdall.iq_captures SET scale = 2 WHERE dataset_id = %s",
                      "DELETE FROM heimdall.iq_captures WHERE dataset_id = %s"):
        with pytest.raises(psycopg.Error, match="append-only"):
            with conn.transaction():
                conn.execute(statement, (dataset_id,))
    with pytest.raises(psycopg.errors.UniqueViolation):  # an overlap fails loudly
        with conn.transaction():
            conn.execute("INSERT INTO heimdall.iq_captures SELECT * FROM heimdall.iq_captures "
                         "WHERE dataset_id = %s", (dataset_id,))
    assert len(stored_captures(conn, dataset_id)) > 0
    datasets.delete_dataset(conn, dataset_id)
    with conn.transaction():
        left = conn.execute("SELECT count(*) FROM heimdall.iq_captures").fetchone()[0]
    assert left == 0


def test_validate_notices_missing_captures(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "holes", 5, seed=3, **STORED)
    with conn.transaction():  # a capture lost behind the trigger's back
        conn.execute("ALTER TABLE heimdall.iq_captures DISABLE TRIGGER USER")
        conn.execute("DELETE FROM heimdall.iq_captures WHERE dataset_id = %s AND sample_index = 2"
                     " AND receiver = 0", (dataset_id,))
        conn.execute("ALTER TABLE heimdall.iq_captures ENABLE TRIGGER USER")
    report = datasets.validate_dataset(conn, dataset_id)
    assert not report["ok"] and not report["iq_captures_agree"]
    assert report["iq_captures_stored"] == report["iq_captures_expected"] - 1
    assert report["counts_agree"]  # the rows themselves are fine


# ---- C4 determinism: splits, batch sizes, threads ---------------------------------------------

@pytest.mark.parametrize("fields", STORAGES)
def test_five_then_a_thousand_equals_1005_at_once_iq_included(conn, db_url, fields):
    split, _ = generate(conn, db_url, "split", 5, seed=2026, **fields)
    expand(conn, db_url, split, 1000)
    whole, _ = generate(conn, db_url, "whole", 1005, seed=2026, **fields)
    assert rows(conn, split, IQ_ROW_COLUMNS) == rows(conn, whole, IQ_ROW_COLUMNS)
    assert len(rows(conn, whole, "sample_index")) == 1005
    assert digest(dataset_iq(conn, split)) == digest(dataset_iq(conn, whole))
    if fields is STORED:
        assert stored_captures(conn, split) == stored_captures(conn, whole)


def test_batch_size_and_threads_do_not_change_the_iq(conn, db_url):
    made = []
    for name, batch_size, threads in (("a", 37, 1), ("b", 500, 2)):
        created = submit(conn, name=name, num_samples=400, seed=77, batch_size=batch_size,
                         use_random_receivers=True, **STORED)
        assert run_job(db_url, created["job_id"], threads=threads).final_count == 400
        made.append(created["dataset_id"])
    a, b = made
    assert rows(conn, a, IQ_ROW_COLUMNS) == rows(conn, b, IQ_ROW_COLUMNS)
    assert stored_captures(conn, a) == stored_captures(conn, b)
    assert digest(dataset_iq(conn, a)) == digest(dataset_iq(conn, b))


def test_an_expansion_cannot_change_the_type_or_the_captures_shape(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "fixed", 5, seed=1, **SHORT)
    for change in ({"iq_duration_ms": 40}, {"iq_format": "cf32"},
                   {"iq_sample_rate_hz": 50_000}, {"dataset_type": "feature_based"}):
        with pytest.raises(ConflictError) as refused:
            submit(conn, expand_dataset_id=dataset_id, num_samples=5,
                   allow_parameter_override=True, **change)
        assert refused.value.fields == list(change)
    assert counts(conn, dataset_id) == (5, 5)


# ---- C5 kill and resume -----------------------------------------------------------------------

def test_killed_then_resumed_gives_the_same_samples_and_iq(conn, db_url):
    created = submit(conn, name="killed", num_samples=600, seed=9, batch_size=100, **STORED)
    killed_after(conn, db_url, created, 2)
    assert datasets.validate_dataset(conn, created["dataset_id"])["ok"]  # captures too
    jobs.prepare_resume(conn, created["job_id"])
    assert run_job(db_url, created["job_id"]).final_count == 600
    straight, _ = generate(conn, db_url, "straight", 600, seed=9, **STORED)
    assert rows(conn, created["dataset_id"], IQ_ROW_COLUMNS) == rows(conn, straight,
                                                                      IQ_ROW_COLUMNS)
    assert stored_captures(conn, created["dataset_id"]) == stored_captures(conn, straight)


# ---- C6 one job at a time on a dataset --------------------------------------------------------

def test_two_iq_jobs_on_one_dataset_run_one_after_the_other(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "shared", 5, seed=6, **STORED)
    first = submit(conn, expand_dataset_id=dataset_id, num_samples=400, batch_size=50)
    second = submit(conn, expand_dataset_id=dataset_id, num_samples=200, batch_size=50)
    statuses, results = [], {}

    def run(created):
        results[created["job_id"]] = run_job(db_url, created["job_id"], on_event=lambda e: (
            statuses.append((created["job_id"], e.get("status"))) if e["type"] == "status"
            else None))

    t1 = threading.Thread(target=run, args=(first,))
    t1.start()
    while jobs.get_job(conn, first["job_id"])["status"] == "pending":
        pass
    t2 = threading.Thread(target=run, args=(second,))
    t2.start()
    t1.join()
    t2.join()
    assert (results[first["job_id"]].samples_offset,
            results[second["job_id"]].samples_offset) == (5, 405)
    assert counts(conn, dataset_id) == (605, 605)
    straight, _ = generate(conn, db_url, "straight", 605, seed=6, **STORED)
    assert rows(conn, dataset_id, IQ_ROW_COLUMNS) == rows(conn, straight, IQ_ROW_COLUMNS)
    assert stored_captures(conn, dataset_id) == stored_captures(conn, straight)


# ---- reading ------------------------------------------------------------------------------------

def test_a_feature_based_dataset_has_no_iq(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "plain", 3, seed=1)
    with pytest.raises(NotIQError, match="only iq_raw"):
        sample_signal(conn, dataset_id, 0)
    assert "iq_captures_agree" not in datasets.validate_dataset(conn, dataset_id)
