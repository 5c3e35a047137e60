"""Binary COPY of kernel batches into heimdall.measurement_features, and the table's guards."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone

import numpy as np
import psycopg
import pytest

from heimdall_synth.kernel import GenerationConfig, run_attempts
from heimdall_synth.service.storage.copy_rows import (
    ARRAY_COLUMNS, COLUMNS, copy_batch, pack_feature_rows, recording_session_id, recording_session_ids)
from heimdall_synth.service.storage.ids import new_dataset_id

FREQUENCY_HZ = 145.5e6
CREATED_AT = datetime(2025, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
FLOAT4 = {"tx_altitude_m", "tx_power_dbm", "mean_snr_db", "overall_confidence"}


@pytest.fixture(scope="module")
def fixed_batch():
    return run_attempts(GenerationConfig.from_dict({}), seed=7, start=0, count=2000).accepted()


@pytest.fixture(scope="module")
def random_batch():
    cfg = GenerationConfig.from_dict({"use_random_receivers": True})
    batch = run_attempts(cfg, seed=7, start=0, count=2000).accepted()
    assert len(set(batch.n_receivers.tolist())) > 1  # really variable-length arrays
    return batch


def new_dataset(conn, name="ds") -> uuid.UUID:
    dataset_id = new_dataset_id()
    conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                 "VALUES (%s, %s, 7, '{}')", (dataset_id, name))
    return dataset_id


def store(conn, batch, dataset_id, first=0, job_id=None):
    buffer = pack_feature_rows(batch, dataset_id, first, job_id, FREQUENCY_HZ, CREATED_AT)
    with conn.cursor() as cur:
        written = copy_batch(cur, buffer)
    conn.commit()
    return written


def count(conn, dataset_id=None) -> int:
    if dataset_id is None:
        return conn.execute("SELECT count(*) FROM heimdall.measurement_features").fetchone()[0]
    return conn.execute("SELECT count(*) FROM heimdall.measurement_features WHERE dataset_id = %s",
                        (dataset_id,)).fetchone()[0]


def fetch_columns(conn, dataset_id) -> dict[str, list]:
    with conn.cursor(binary=True) as cur:
        cur.execute(f"SELECT {', '.join(COLUMNS)} FROM heimdall.measurement_features "
                    "WHERE dataset_id = %s ORDER BY sample_index", (dataset_id,))
        rows = cur.fetchall()
    conn.rollback()
    return {name: [row[k] for row in rows] for k, name in enumerate(COLUMNS)}


def assert_round_trip(batch, got, dataset_id, first, job_id):
    n = len(batch)
    assert len(got["sample_index"]) == n
    assert got["sample_index"] == list(range(first, first + n))
    assert got["recording_session_id"] == recording_session_ids(dataset_id, range(first, first + n))
    assert set(got["dataset_id"]) == {dataset_id}
    assert set(got["job_id"]) == {job_id}
    assert set(got["created_at"]) == {CREATED_AT}
    assert set(got["frequency_hz"]) == {FREQUENCY_HZ}
    assert set(got["tx_known"]) == {True}
    np.testing.assert_array_equal(got["attempt_index"], batch.attempt_index)
    np.testing.assert_array_equal(got["num_receivers_in_sample"], batch.n_receivers)
    np.testing.assert_array_equal(got["num_receivers_detected"], batch.n_detected)
    for name in ("tx_latitude", "tx_longitude", "tx_altitude_m", "tx_power_dbm", "mean_snr_db",
                 "gdop", "hdop", "crb_m", "overall_confidence"):
        expected = getattr(batch, name)
        if name in FLOAT4:
            expected = expected.astype(np.float32)
        np.testing.assert_array_equal(np.array(got[name], expected.dtype), expected, err_msg=name)
    # The stored power is the effective one, not the nominal one.
    assert not np.array_equal(batch.tx_power_dbm, batch.tx_power_nominal_dbm)

    keep = batch.rx_id >= 0
    assert [len(v) for v in got["rx_id"]] == batch.n_receivers.tolist()  # padding not stored
    for name, element_type, _ in ARRAY_COLUMNS:
        values = getattr(batch, name)
        assert all(len(v) == k for v, k in zip(got[name], batch.n_receivers)), name
        stored = np.array([x for row in got[name] for x in row],
                          np.dtype(element_type).newbyteorder("="))
        expected = values[keep].astype(stored.dtype)  # row-major: receivers in order, by row
        np.testing.assert_array_equal(stored, expected, err_msg=name)


@pytest.mark.parametrize("kind", ["fixed", "random"])
def test_copy_round_trip(conn, kind, fixed_batch, random_batch):
    batch = fixed_batch if kind == "fixed" else random_batch
    dataset_id, job_id = new_dataset(conn), uuid.uuid4()
    assert store(conn, batch, dataset_id, first=0, job_id=job_id) == len(batch)
    assert_round_trip(batch, fetch_columns(conn, dataset_id), dataset_id, 0, job_id)


def test_copy_appends_in_several_batches(conn, random_batch):
    dataset_id = new_dataset(conn)
    half = len(random_batch) // 2
    store(conn, random_batch.take(np.arange(half)), dataset_id, first=0)
    store(conn, random_batch.take(np.arange(half, len(random_batch))), dataset_id, first=half)
    assert_round_trip(random_batch, fetch_columns(conn, dataset_id), dataset_id, 0, None)


def test_padding_anywhere_is_dropped_in_receiver_order(conn, fixed_batch):
    # Not what the kernel produces today, but the contract is "rx_id == -1 marks padding".
    batch = fixed_batch.take(np.arange(50))
    batch.rx_id[::2, 1] = -1
    batch.rx_id[1::3, 0] = -1
    batch.n_receivers[:] = (batch.rx_id >= 0).sum(axis=1)
    dataset_id = new_dataset(conn)
    store(conn, batch, dataset_id)
    assert_round_trip(batch, fetch_columns(conn, dataset_id), dataset_id, 0, None)


def test_empty_batch_and_refused_inputs(conn, fixed_batch):
    dataset_id = new_dataset(conn)
    assert store(conn, fixed_batch.take(np.arange(0)), dataset_id) == 0
    everything = run_attempts(GenerationConfig.from_dict({}), seed=7, start=0, count=200)
    with pytest.raises(ValueError, match="accepted"):
        pack_feature_rows(everything, dataset_id, 0, None, FREQUENCY_HZ)
    with pytest.raises(ValueError, match="timezone"):
        pack_feature_rows(fixed_batch, dataset_id, 0, None, FREQUENCY_HZ, datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="sample indices"):
        pack_feature_rows(fixed_batch, dataset_id, -1, None, FREQUENCY_HZ)


def test_pack_is_deterministic(fixed_batch):
    dataset_id, job_id = new_dataset_id(), uuid.uuid4()
    a = pack_feature_rows(fixed_batch, dataset_id, 5, job_id, FREQUENCY_HZ, CREATED_AT)
    b = pack_feature_rows(fixed_batch, dataset_id, 5, job_id, FREQUENCY_HZ, CREATED_AT)
    assert bytes(a) == bytes(b)
    assert bytes(a[:11]) == b"PGCOPY\n\xff\r\n\x00" and bytes(a[-2:]) == b"\xff\xff"


def test_recording_session_ids(conn, fixed_batch):
    dataset_id = new_dataset_id()
    ids = recording_session_ids(dataset_id, range(1000))
    assert ids == recording_session_ids(dataset_id, np.arange(1000))  # deterministic
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    assert recording_session_id(dataset_id, 37) == ids[37]
    for rid, index in ((ids[0], 0), (ids[999], 999)):
        assert rid.bytes[:8] == dataset_id.bytes[:8]
        assert int.from_bytes(rid.bytes[8:], "big") == (1 << 63) | index
        assert rid.variant == uuid.RFC_4122 and rid.version == 7
    big = recording_session_ids(dataset_id, [2**40, 2**62 - 1])
    assert ids[-1] < big[0] < big[1]
    assert recording_session_ids(new_dataset_id(), [0]) != recording_session_ids(dataset_id, [0])
    # PostgreSQL orders them (uuid comparison is bytewise) by sample index too.
    dataset = new_dataset(conn)
    store(conn, fixed_batch, dataset, first=10)
    order = conn.execute("SELECT sample_index FROM heimdall.measurement_features "
                         "ORDER BY recording_session_id").fetchall()
    assert [i for (i,) in order] == list(range(10, 10 + len(fixed_batch)))


def test_new_dataset_ids_are_uuid7_and_increasing():
    before_ms = time.time_ns() // 1_000_000
    ids = [new_dataset_id() for _ in range(5000)]
    after_ms = time.time_ns() // 1_000_000
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert ids == sorted(ids) and len({i.bytes[:8] for i in ids}) == len(ids)
    # the timestamp is the clock's when the id was made: between the readings around it
    assert before_ms <= int.from_bytes(ids[0].bytes[:6], "big") <= after_ms


def test_overlapping_copy_fails_loudly_and_changes_nothing(conn, fixed_batch):
    dataset_id = new_dataset(conn)
    store(conn, fixed_batch, dataset_id, first=0)
    before = fetch_columns(conn, dataset_id)
    overlap = fixed_batch.take(np.arange(10))
    with pytest.raises(psycopg.errors.UniqueViolation):
        store(conn, overlap, dataset_id, first=len(fixed_batch) - 5)
    conn.rollback()
    assert count(conn, dataset_id) == len(fixed_batch)
    assert fetch_columns(conn, dataset_id) == before
    # Continuing at the right index works.
    assert store(conn, overlap, dataset_id, first=len(fixed_batch)) == 10


def test_sample_rows_cannot_be_updated_or_deleted_directly(conn, fixed_batch):
    dataset_id = new_dataset(conn)
    store(conn, fixed_batch.take(np.arange(20)), dataset_id)
    for statement in ("UPDATE heimdall.measurement_features SET gdop = 0 WHERE sample_index = 0",
                      "UPDATE heimdall.measurement_features SET gdop = 0 WHERE false",
                      "DELETE FROM heimdall.measurement_features WHERE sample_index = 0"):
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            conn.execute(statement)
        conn.rollback()
    assert count(conn, dataset_id) == 20


def test_deleting_a_dataset_cascades(conn, fixed_batch):
    keep, drop = new_dataset(conn, "keep"), new_dataset(conn, "drop")
    conn.execute("INSERT INTO heimdall.generation_jobs (id, dataset_id, kind, requested) "
                 "VALUES (%s, %s, 'create', 20)", (uuid.uuid4(), drop))
    store(conn, fixed_batch.take(np.arange(20)), keep)
    store(conn, fixed_batch.take(np.arange(30)), drop)
    conn.execute("DELETE FROM heimdall.synthetic_datasets WHERE id = %s", (drop,))
    conn.commit()
    assert count(conn, drop) == 0 and count(conn, keep) == 20
    assert conn.execute("SELECT count(*) FROM heimdall.generation_jobs").fetchone()[0] == 0


def test_unknown_dataset_is_refused(conn, fixed_batch):
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        store(conn, fixed_batch.take(np.arange(3)), new_dataset_id())


def test_json_view_has_one_object_per_stored_receiver(conn, random_batch):
    dataset_id = new_dataset(conn)
    batch = random_batch.take(np.arange(200))
    store(conn, batch, dataset_id)
    rows = conn.execute("SELECT sample_index, num_receivers_in_sample, receiver_features "
                        "FROM heimdall.measurement_features_json WHERE dataset_id = %s "
                        "ORDER BY sample_index", (dataset_id,)).fetchall()
    assert len(rows) == len(batch)
    names = {"rx_id": "rx_id", "lat": "rx_lat", "lon": "rx_lon", "alt_m": "rx_alt_m",
             "distance_km": "distance_km", "signal_present": "signal_present",
             "rssi_dbm": "rssi_dbm", "snr_db": "snr_db", "rssi_std_db": "rssi_std_db",
             "rssi_min_dbm": "rssi_min_dbm", "rssi_max_dbm": "rssi_max_dbm",
             "noise_floor_dbm": "noise_floor_dbm", "psd_dbm_per_hz": "psd_dbm_per_hz",
             "freq_offset_hz": "freq_offset_hz"}
    float4 = {name for name, t, _ in ARRAY_COLUMNS if t == ">f4"}
    for i, (sample_index, n_receivers, receivers) in enumerate(rows):
        assert sample_index == i and len(receivers) == n_receivers == batch.n_receivers[i]
        slots = np.flatnonzero(batch.rx_id[i] >= 0)
        for receiver, slot in zip(receivers, slots):
            assert set(receiver) == set(names)
            for key, attribute in names.items():
                expected = getattr(batch, attribute)[i, slot]
                if attribute in float4:
                    assert np.float32(receiver[key]) == np.float32(expected), key
                else:
                    assert receiver[key] == expected, key
