"""Export (docs/EXPORT.md): Parquet and NPZ files of a dataset, through the CLI and over HTTP,
hold exactly the database's rows; an export is one snapshot even while an expansion commits;
the reader holds a bounded number of rows whatever the dataset's size; bad input is refused
and changes nothing; the documented training example runs on real exports."""

from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
import weakref
from datetime import timezone
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from werkzeug.test import EnvironBuilder

from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS
from heimdall_synth.service.export import columns as export_columns
from heimdall_synth.service.export import reader as export_reader
from heimdall_synth.service.export import writers as export
from heimdall_synth.service.storage import datasets as dataset_store
from heimdall_synth.service.engine.request import ConflictError, NotFoundError
from tests.helpers import ROOT, cli_json, expand, generate, url_counts

#: heimdall.measurement_features' columns, in order, but dataset_id (it is in the metadata).
TABLE_COLUMNS = (
    "recording_session_id", "sample_index", "attempt_index", "job_id", "created_at",
    "tx_latitude", "tx_longitude", "tx_altitude_m", "tx_power_dbm", "frequency_hz", "tx_known",
    "num_receivers_in_sample", "num_receivers_detected", "mean_snr_db", "gdop", "hdop", "crb_m",
    "overall_confidence", "rx_id", "rx_lat", "rx_lon", "rx_alt_m", "distance_km",
    "signal_present", "rssi_dbm", "snr_db", "rssi_std_db", "rssi_min_dbm", "rssi_max_dbm",
    "noise_floor_dbm", "psd_dbm_per_hz", "freq_offset_hz", "split")
PER_RECEIVER = TABLE_COLUMNS[TABLE_COLUMNS.index("rx_id"):TABLE_COLUMNS.index("split")]
PADDING = {"rx_id": -1, "signal_present": False}  # every other per-receiver column: NaN
#: PostgreSQL (element) type -> NumPy dtype of its values in an export
NUMPY_OF = {"int2": "i2", "int8": "i8", "float4": "f4", "float8": "f8", "bool": "?"}


# ----------------------------------------------------------------------------- the truth

def db_columns(db_url, dataset_id) -> dict:
    """The dataset's rows as read by plain SQL (binary results: floats exact), one NumPy
    array per column in the export's representation: per-receiver columns padded to the
    longest row, UUIDs as text ('' for NULL), times as UTC microseconds."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        types = dict(conn.execute(
            "SELECT column_name, udt_name FROM information_schema.columns WHERE table_schema = "
            "'heimdall' AND table_name = 'measurement_features'").fetchall())
        cur = conn.cursor(binary=True)
        rows = cur.execute(f"SELECT {', '.join(TABLE_COLUMNS)} FROM heimdall.measurement_features"
                           " WHERE dataset_id = %s ORDER BY sample_index", (dataset_id,)).fetchall()
    by_name = dict(zip(TABLE_COLUMNS, zip(*rows))) if rows else {c: () for c in TABLE_COLUMNS}
    slots = max((len(r) for r in by_name["rx_id"]), default=0)
    out = {}
    for name, values in by_name.items():
        if name in PER_RECEIVER:
            dtype = NUMPY_OF[types[name].lstrip("_")]
            padded = np.full((len(values), slots), PADDING.get(name, np.nan), dtype)
            for i, v in enumerate(values):
                padded[i, :len(v)] = v
            out[name] = padded
        elif name in ("recording_session_id", "job_id"):
            out[name] = np.array(["" if v is None else str(v) for v in values], "U36")
        elif name == "created_at":
            out[name] = np.array([v.astimezone(timezone.utc).replace(tzinfo=None)
                                  for v in values], "datetime64[us]")
        else:
            out[name] = np.array(values, NUMPY_OF[types[name]])
    return out


def npz_columns(path) -> tuple[dict, dict]:
    with np.load(path) as data:  # plain numpy.load: no pickle
        meta = json.loads(data["metadata.json"])
        return {k: data[k] for k in data.files if k != "metadata.json"}, meta


def parquet_columns(path) -> tuple[dict, dict]:
    table = pq.read_table(path)
    out = {}
    for name in table.column_names:
        col = table.column(name).combine_chunks()
        if isinstance(col.type, pa.FixedSizeListType):
            out[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(
                len(col), col.type.list_size)
        elif isinstance(col.type, pa.BaseExtensionType):  # arrow.uuid
            assert col.type.extension_name == "arrow.uuid"
            out[name] = np.array(["" if v is None else str(uuid.UUID(bytes=v))
                                  for v in col.storage.to_pylist()], "U36")
        else:
            out[name] = col.to_numpy(zero_copy_only=False)
    meta = json.loads(table.schema.metadata[b"heimdall"])
    return out, meta


def assert_same_rows(got: dict, expected: dict) -> None:
    """Every column, every value, dtype included (NaN only where padding is NaN)."""
    assert list(got) == list(TABLE_COLUMNS)
    for name in TABLE_COLUMNS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name, strict=True)


def file_of(db_url, dataset_id):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT id, name, config, seed FROM heimdall.synthetic_datasets "
                            "WHERE id = %s", (dataset_id,)).fetchone()


def check_metadata(meta, db_url, dataset_id, rows, slots, fmt):
    ds_id, name, config, seed = file_of(db_url, dataset_id)
    assert meta["dataset_id"] == str(ds_id) and meta["name"] == name
    assert meta["config"] == config and meta["seed"] == seed
    assert meta["num_samples"] == rows and meta["receiver_slots"] == slots
    assert meta["format"] == f"heimdall-synth export ({fmt})"
    assert [c["name"] for c in meta["columns"]] == list(TABLE_COLUMNS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+\+00:00", meta["exported_at"])


@pytest.fixture
def datasets(conn, db_url):
    """A fixed-receiver dataset (7 receivers, no padding) and a random-receiver one (5 to 10
    receivers per sample: padding), both expanded once (two jobs' rows)."""
    fixed, _ = generate(conn, db_url, "fixed", 1500, seed=11)
    expand(conn, db_url, fixed, 700)
    varied, _ = generate(conn, db_url, "varied", 1200, seed=12, use_random_receivers=True)
    expand(conn, db_url, varied, 300)
    return {"fixed": fixed, "varied": varied}


# ----------------------------------------------------------------------------- round trips

def test_exported_columns_are_the_tables_in_order(conn):
    """feature_based: the table's columns but the features measured from IQ; iq_raw: all."""
    assert [c.name for c in export_reader.table_columns(conn)] == list(TABLE_COLUMNS)
    table = [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'heimdall' "
        "AND table_name = 'measurement_features' ORDER BY ordinal_position")]
    assert [c for c in table if c not in ("dataset_id",) + IQ_FEATURE_COLUMNS] == list(
        TABLE_COLUMNS)  # split last: it came with migration 007, after the iq_* columns
    assert [c.name for c in export_reader.table_columns(conn, "iq_raw")] == [
        c for c in table if c != "dataset_id"]
    assert len(IQ_FEATURE_COLUMNS) == 64


def test_cli_round_trip_both_formats_equals_the_database(db, datasets, tmp_path):
    for which, dataset_id in datasets.items():
        expected = db_columns(db, dataset_id)
        slots = expected["rx_id"].shape[1]
        assert slots == (7 if which == "fixed" else 10)
        for fmt, read in (("parquet", parquet_columns), ("npz", npz_columns)):
            out = tmp_path / f"{which}.{fmt}"
            # by name, then by id; the format from --format, then from the extension
            ref, args = (which, ["--format", fmt]) if fmt == "parquet" else (dataset_id, [])
            result = cli_json(db, "export", ref, "--out", out, *args)
            assert result["path"] == str(out) and result["rows"] == len(expected["sample_index"])
            assert result["format"] == fmt and result["receiver_slots"] == slots
            assert not list(tmp_path.glob(".*"))  # no partial file or spool folder left
            got, meta = read(out)
            assert_same_rows(got, expected)
            check_metadata(meta, db, dataset_id, result["rows"], slots, fmt)
    # a padded slot is padding everywhere; a real one never is
    got, _ = npz_columns(tmp_path / "varied.npz")
    real = got["rx_id"] >= 0
    assert (real.sum(axis=1) == got["num_receivers_in_sample"]).all() and not real.all()
    assert np.isnan(got["rssi_dbm"][~real]).all() and not np.isnan(got["rssi_dbm"][real]).any()
    assert not got["signal_present"][~real].any()
    pf = pq.ParquetFile(tmp_path / "fixed.parquet")  # one row group per chunk
    assert pf.metadata.num_row_groups == 1 and pf.metadata.num_rows == 2200


def test_cli_default_file_name_progress_and_plain_output(db, conn, db_url, tmp_path):
    hostile = "../run 1/é:*?\"<>|\n"
    dataset_id, _ = generate(conn, db_url, hostile, 40, seed=3)
    env = {**os.environ, "DATABASE_URL": db, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "heimdall_synth.service.cli", "export", dataset_id],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    written = [p.name for p in tmp_path.iterdir() if p.name != "never-used"]
    # in the current folder, no path separator or control character in the name
    assert written == ["_run 1_é________.parquet"]
    assert "exported 40 samples of dataset" in res.stdout and written[0] in res.stdout
    assert "progress: read 40 / 40 rows (100%)" in res.stderr
    assert_same_rows(parquet_columns(tmp_path / written[0])[0], db_columns(db_url, dataset_id))


def test_http_round_trip_both_formats_equals_the_database(api, db_url, conn, tmp_path):
    fixed, _ = generate(conn, db_url, "fixed", 900, seed=21)
    varied, _ = generate(conn, db_url, "naïve set", 700, seed=22, use_random_receivers=True)
    for dataset_id in (fixed, varied):
        expected = db_columns(db_url, dataset_id)
        for fmt, read, media in (("parquet", parquet_columns, "application/vnd.apache.parquet"),
                                 ("npz", npz_columns, "application/zip")):
            query = "" if fmt == "parquet" else "?format=npz"  # parquet is the default
            reply = api.get(f"/datasets/{dataset_id}/export{query}", timeout=120)
            assert reply.status == 200, reply
            assert reply.headers["Content-Type"] == media
            assert reply.headers["X-Dataset-Rows"] == str(len(expected["sample_index"]))
            path = tmp_path / f"{dataset_id}.{fmt}"
            path.write_bytes(reply.raw)
            got, meta = read(path)
            assert_same_rows(got, expected)
            check_metadata(meta, db_url, dataset_id, len(expected["sample_index"]),
                           expected["rx_id"].shape[1], fmt)
    disposition = api.get(f"/datasets/{varied}/export?format=npz").headers["Content-Disposition"]
    assert disposition == ("attachment; filename=\"naive set.npz\"; "
                           "filename*=UTF-8''na%C3%AFve%20set.npz")
    head = api.request("HEAD", f"/datasets/{fixed}/export")
    assert head.status == 200 and head.raw == b"" and head.headers["X-Dataset-Rows"] == "900"


# ----------------------------------------------------------------------------- consistency

def quality_of(db_url, dataset_id):
    with psycopg.connect(db_url, autocommit=True) as conn:
        return conn.execute("SELECT quality_metrics FROM heimdall.synthetic_datasets "
                            "WHERE id = %s", (dataset_id,)).fetchone()[0]


def test_export_is_one_snapshot_while_an_expansion_commits(conn, db_url, tmp_path,
                                                           monkeypatch):
    # Parquet: an expansion commits 1,000 rows between the export's first and second chunk
    dataset_id, _ = generate(conn, db_url, "growing", 2000, seed=31)
    before = db_columns(db_url, dataset_id)
    out = tmp_path / "growing.parquet"
    with export.Snapshot(db_url, dataset_id) as snapshot, open(out, "wb") as f:
        steps = export.parquet_steps(snapshot, f, chunk_rows=300)
        assert next(steps) == 300
        expand(conn, db_url, dataset_id, 1000)
        assert url_counts(db_url, dataset_id) == (3000, 3000)
        assert list(steps)[-1] == 2000
    got, meta = parquet_columns(out)
    assert meta["num_samples"] == 2000
    assert_same_rows(got, before)

    # NPZ: the expansion commits right after the snapshot's first statement (the dataset's
    # row), before its COUNT: N, the rows and the metadata are still those of that moment
    quality = quality_of(db_url, dataset_id)
    find = export_reader._find_dataset

    def find_then_expand(*args, **kw):
        found = find(*args, **kw)
        expand(conn, db_url, dataset_id, 500)
        return found

    monkeypatch.setattr(export_reader, "_find_dataset", find_then_expand)
    out = tmp_path / "growing.npz"
    export.export_file(db_url, dataset_id, export.FORMATS["npz"], out, chunk_rows=700)
    monkeypatch.setattr(export_reader, "_find_dataset", find)
    assert url_counts(db_url, dataset_id) == (3500, 3500)
    got, meta = npz_columns(out)
    assert meta["num_samples"] == 3000 and meta["quality_metrics"] == quality
    assert quality_of(db_url, dataset_id) != quality
    assert_same_rows(got, {k: v[:3000] for k, v in db_columns(db_url, dataset_id).items()})

    # the dataset deleted mid-export: the export still writes every row of its snapshot
    expected = db_columns(db_url, dataset_id)
    with export.Snapshot(db_url, dataset_id) as snapshot:
        chunks = snapshot.chunks(1000)
        first = next(chunks)
        dataset_store.delete_dataset(conn, dataset_id)
        assert url_counts(db_url, dataset_id) is None
        rows = [first.values["sample_index"]] + [c.values["sample_index"] for c in chunks]
    np.testing.assert_array_equal(np.concatenate(rows), expected["sample_index"])


# ----------------------------------------------------------------------------- memory

def test_reader_holds_at_most_two_chunks_and_memory_does_not_grow_with_rows(conn, db_url,
                                                                            tmp_path):
    small, _ = generate(conn, db_url, "small", 1000, seed=41)
    large, _ = generate(conn, db_url, "large", 4000, seed=42)
    alive: list = []
    original = export_columns.Layout.decode

    def tracked(self, *args):
        chunk = original(self, *args)
        alive.append(weakref.ref(chunk.values["rssi_dbm"]))
        return chunk

    def peak_of(dataset_id, name) -> tuple[int, list]:
        alive.clear()
        held, sizes = [], []
        gc.collect()
        tracemalloc.start()
        try:
            with export.Snapshot(db_url, dataset_id) as snapshot, \
                    open(tmp_path / name, "wb") as f:
                for done in export.parquet_steps(snapshot, f, chunk_rows=250):
                    gc.collect()
                    held.append(sum(ref() is not None for ref in alive))
                    sizes.append(done)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        return peak, held, sizes

    export_columns.Layout.decode = tracked
    try:
        peak_small, held_small, _ = peak_of(small, "small.parquet")
        peak_large, held_large, sizes = peak_of(large, "large.parquet")
    finally:
        export_columns.Layout.decode = original
    # 16 chunks of 250 rows, each one row group; at any step at most the chunk being written
    # and the one read ahead exist
    assert sizes == list(range(250, 4001, 250))
    assert pq.ParquetFile(tmp_path / "large.parquet").metadata.num_row_groups == 16
    assert max(held_large) <= 2 and max(held_small) <= 2
    # Python and NumPy memory (tracemalloc): 4 times the rows, about the same peak (at most
    # one more chunk's values), and below half of what the 4,000 rows' values alone take
    # (the peak holds two chunks' array bytes, one decoded chunk and the one being written)
    values = sum(v.nbytes for v in npz_columns(export_npz(db_url, large, tmp_path))[0].values())
    assert peak_large < 1.25 * peak_small + values / 16
    assert peak_large < values / 2


def export_npz(db_url, dataset_id, folder) -> Path:
    path = folder / f"{dataset_id}.npz"
    export.export_file(db_url, dataset_id, export.FORMATS["npz"], path)
    return path


# ----------------------------------------------------------------------------- refusals

def test_cli_refusals_change_nothing(db, conn, db_url, tmp_path):
    dataset_id, _ = generate(conn, db_url, "kept", 30, seed=51)
    res = cli_json(db, "export", "kept", "--format", "csv", rc=2)
    assert res["field"] == "format" and "parquet, npz" in res["message"]
    res = cli_json(db, "export", "no-such-dataset", "--out", tmp_path / "x.parquet", rc=3)
    assert res["field"] == "dataset" and "no-such-dataset" in res["message"]
    assert not list(tmp_path.iterdir())
    existing = tmp_path / "kept.npz"
    existing.write_bytes(b"precious")
    res = cli_json(db, "export", "kept", "--out", existing, rc=4)
    assert res["error"] == "file_exists" and res["field"] == "out"
    assert existing.read_bytes() == b"precious" and len(list(tmp_path.iterdir())) == 1
    res = cli_json(db, "export", "kept", "--out", tmp_path, rc=2)  # a folder
    assert res["field"] == "out"
    res = cli_json(db, "export", "kept", "--out", tmp_path / "missing" / "x.npz", rc=2)
    assert res["field"] == "out" and "does not exist" in res["message"]
    assert cli_json(db, "export", "kept", "--out", existing, "--force")["rows"] == 30
    assert_same_rows(npz_columns(existing)[0], db_columns(db_url, dataset_id))


def test_http_refusals(api, conn, db_url):
    dataset_id, _ = generate(conn, db_url, "served", 20, seed=52)
    for path, status, field in [
            (f"/datasets/{dataset_id}/export?format=csv", 422, "format"),
            (f"/datasets/{dataset_id}/export?format=", 422, "format"),
            (f"/datasets/{dataset_id}/export?format=npz&format=npz", 422, "format"),
            (f"/datasets/{dataset_id}/export?limit=5", 422, "limit"),
            (f"/datasets/{uuid.uuid4()}/export", 404, "dataset_id"),
            ("/datasets/not-a-uuid/export?format=npz", 422, "dataset_id"),
            (f"/datasets/{uuid.uuid4()}/export?format=csv", 422, "format")]:  # 422 before 404
        reply = api.get(path)
        assert (reply.status, reply.json["field"]) == (status, field), (path, reply)
        assert reply.headers["Content-Type"] == "application/json"
    assert api.post(f"/datasets/{dataset_id}/export").status == 405


def test_rows_the_export_cannot_represent_are_refused_by_name(api, conn, db_url, tmp_path):
    source, _ = generate(conn, db_url, "source", 50, seed=61)

    def with_odd_row(name: str, change: str, value: str, at: int = 50) -> str:
        """A copy of the source dataset with row ``at`` (50: an extra last row; 0-49: in place
        of that row) made from row 0 with ``change`` set to the SQL ``value`` (rows are only
        ever written by COPY; this one is written by hand)."""
        dataset_id = str(uuid.uuid4())
        columns = [c for c in TABLE_COLUMNS if c != "recording_session_id"]
        odd = [value if c == change else str(at) if c == "sample_index" else c for c in columns]
        with conn.transaction():
            conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                         "SELECT %s, %s, seed, config FROM heimdall.synthetic_datasets "
                         "WHERE id = %s", (dataset_id, name, source))
            for chosen, where in ((columns, f"AND sample_index <> {at}"),
                                  (odd, "AND sample_index = 0")):
                conn.execute(
                    f"INSERT INTO heimdall.measurement_features (recording_session_id, "
                    f"dataset_id, {', '.join(columns)}) SELECT gen_random_uuid(), "
                    f"%(new)s::uuid, {', '.join(chosen)} FROM heimdall.measurement_features "
                    f"WHERE dataset_id = %(old)s {where}", {"new": dataset_id, "old": source})
        return dataset_id

    def refusal(dataset_id, chunk_rows=16) -> export.ExportError:
        with export.Snapshot(db_url, dataset_id) as snapshot, \
                pytest.raises(export.ExportError) as caught:
            for _ in snapshot.chunks(chunk_rows):
                pass
        return caught.value

    # a row COPYed without a job: exported, its job_id null ('' in NPZ)
    jobless = with_odd_row("jobless", "job_id", "NULL")
    expected = db_columns(db_url, jobless)
    assert expected["job_id"][50] == "" and expected["job_id"][49] != ""
    for fmt, read in (("parquet", parquet_columns), ("npz", npz_columns)):
        out = tmp_path / f"jobless.{fmt}"
        export.export_file(db_url, "jobless", export.FORMATS[fmt], out, chunk_rows=16)
        assert_same_rows(read(out)[0], expected)

    null = with_odd_row("null", "tx_latitude", "NULL")
    err = refusal(null)
    assert err.code == "not_exportable" and err.fields == ["tx_latitude"]
    assert "column tx_latitude is NULL in the row with sample_index 50" in str(err)
    err = refusal(with_odd_row("ragged", "rssi_dbm", "rssi_dbm[1:3]"), chunk_rows=51)
    assert err.fields == ["rssi_dbm"]  # 3 values where rx_id has 7: padding does not hide it
    assert "column rssi_dbm has another number of receivers than rx_id in the row with " \
           "sample_index 50" in str(err)
    err = refusal(with_odd_row("holes", "snr_db", "array_append(snr_db[1:6], NULL)"))
    assert err.fields == ["snr_db"] and "NULL elements" in str(err)
    # in the middle of a chunk (rows 16-31, and all 50 in one chunk), named by its
    # sample_index: a NULL element, a NULL scalar, a NULL array, a ragged array
    for chunk_rows in (16, 64):
        for name, change, value, message in [
                ("hole", "rx_lat", "array_append(rx_lat[1:6], NULL)", "has NULL elements"),
                ("nullgdop", "gdop", "NULL", "is NULL"),
                ("nullpsd", "psd_dbm_per_hz", "NULL", "is NULL"),
                ("short", "distance_km", "distance_km[1:6]",
                 "has another number of receivers than rx_id")]:
            err = refusal(with_odd_row(f"{name}-{chunk_rows}", change, value, at=23),
                          chunk_rows=chunk_rows)
            assert err.fields == [change], (name, err)
            assert f"column {change} {message} in the row with sample_index 23" in str(err)
    # the CLI's path leaves no file; over HTTP (NPZ: before any byte is sent) it is a 409
    with pytest.raises(export.ExportError):
        export.export_file(db_url, "null", export.FORMATS["npz"], tmp_path / "null.npz")
    assert not list(tmp_path.glob("null*")) and not list(tmp_path.glob(".null*"))
    reply = api.get(f"/datasets/{null}/export?format=npz")
    assert reply.status == 409 and reply.json["error"] == "not_exportable"
    assert reply.json["field"] == "tx_latitude" and "sample_index 50" in reply.json["message"]


def test_empty_dataset_exports_empty_files(conn, db_url, tmp_path):
    dataset_id = uuid.uuid4()
    with conn.transaction():
        conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                     "VALUES (%s, 'empty', 1, '{}')", (dataset_id,))
    for fmt in ("parquet", "npz"):
        result = export.export_file(db_url, "empty", export.FORMATS[fmt], tmp_path / f"e.{fmt}")
        assert result["rows"] == 0
        got, meta = (parquet_columns if fmt == "parquet" else npz_columns)(tmp_path / f"e.{fmt}")
        assert meta["num_samples"] == 0 and set(got) == set(TABLE_COLUMNS)
        assert all(len(v) == 0 for v in got.values())


def test_file_names_from_hostile_dataset_names():
    fmt = export.FORMATS["npz"]
    assert export.file_name("../../etc/passwd", fmt) == "_.._etc_passwd.npz"
    assert export.file_name("..", fmt) == "dataset.npz"
    assert export.file_name("Größe 5\x00\r\n", fmt) == "Größe 5___.npz"
    header = export.content_disposition('a"b\\c;d', fmt)
    assert header == "attachment; filename=\"a_b_c_d.npz\"; filename*=UTF-8''a_b_c_d.npz"
    assert export.content_disposition("日本", fmt) == (
        "attachment; filename=\"dataset.npz\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.npz")


def test_unknown_dataset_and_format_raise_named_errors(db_url, conn):
    with pytest.raises(NotFoundError) as caught:
        export.Snapshot(db_url, str(uuid.uuid4()), field="dataset_id", by_name=False)
    assert caught.value.field == "dataset_id"
    with pytest.raises(Exception) as bad:
        export.check_format("csv")
    assert bad.value.field == "format"
    assert issubclass(export.ExportError, ConflictError)


# ----------------------------------------------------------------------------- the docs

def doc_examples() -> dict[str, str]:
    """The ```python blocks of docs/EXPORT.md marked <!-- example: FORMAT -->."""
    text = (ROOT / "docs" / "EXPORT.md").read_text()
    found = dict(re.findall(r"<!-- example: (\w+) -->\s*```python\n(.*?)```", text, re.S))
    assert set(found) == {"npz", "parquet", "train"}, found.keys()
    return found


def test_documented_training_example_runs_on_real_exports(conn, db_url, tmp_path):
    dataset_id, _ = generate(conn, db_url, "train", 600, seed=71, use_random_receivers=True)
    truth = db_columns(db_url, dataset_id)
    real = truth["rx_id"] >= 0
    examples = doc_examples()
    for fmt in ("npz", "parquet"):
        path = tmp_path / f"train.{fmt}"
        export.export_file(db_url, dataset_id, export.FORMATS[fmt], path)
        scope = {"path": str(path)}
        for part in (fmt, "train"):  # load the columns, then build X, y and run an epoch
            exec(compile(examples[part], f"docs/EXPORT.md ({part} example)", "exec"), scope)
        X, y = scope["X"], scope["y"]
        assert X.dtype == np.float32 and X.shape == (600, truth["rx_id"].shape[1], 5)
        np.testing.assert_array_equal(
            y, np.stack([truth["tx_latitude"], truth["tx_longitude"]], axis=1))
        assert np.isfinite(X).all()
        present = truth["signal_present"]
        np.testing.assert_array_equal(X[..., 0], np.where(present, truth["rssi_dbm"], 0)
                                      .astype(np.float32))
        np.testing.assert_array_equal(X[..., 2], np.where(real, truth["rx_lat"], 0)
                                      .astype(np.float32))
        np.testing.assert_array_equal(X[..., 4], present.astype(np.float32))
        assert scope["steps"] == len(range(0, 600, 256))  # the loop saw every sample once


def test_a_client_leaving_mid_download_releases_everything(server, conn, db_url, tmp_path,
                                                          monkeypatch):
    """What a WSGI server does when the client goes away: it closes the response, after some
    of the body or before any. The snapshot's connection, the reader thread and NPZ's
    temporary column files must all go with it (they are anonymous files: never a name on
    disk, so not even a kill leaves them behind)."""
    dataset_id, _ = generate(conn, db_url, "abandoned", 3000, seed=81)
    monkeypatch.setattr(export_reader, "CHUNK_ROWS", 500)  # several chunks, so one is in flight
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))

    def backends() -> int:
        with psycopg.connect(db_url, autocommit=True) as probe:
            return probe.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND "
                "pid <> pg_backend_pid() AND (state LIKE 'idle in transaction%%' OR query LIKE "
                "'SELECT array_agg(%%')").fetchone()[0]

    def readers() -> int:
        return sum(t.name == "heimdall-export-reader" for t in threading.enumerate())

    def spool_files() -> int:  # files of this process open in the temporary folder
        return sum(os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path))
                   for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}"))

    for fmt, take in (("parquet", 1), ("npz", 1), ("parquet", 0), ("npz", 0)):
        environ = EnvironBuilder(path=f"/api/training/synthetic/datasets/{dataset_id}/export",
                                 query_string={"format": fmt}).get_environ()
        status = []
        body = server.app(environ, lambda s, headers, exc_info=None: status.append(s))
        assert status == ["200 OK"]
        chunks = iter(body)
        for _ in range(take):
            assert next(chunks)
        if fmt == "parquet":
            assert backends() == 1 and readers() == take  # its snapshot is open
        else:
            assert spool_files() > 0 and not list(tmp_path.iterdir())  # open, but unnamed
        body.close()  # the client is gone
        assert readers() == 0, (fmt, take)  # joined before close() returns
        deadline = time.monotonic() + 60  # a closed session's backend exits asynchronously
        while backends() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backends() == 0, (fmt, take)
        assert spool_files() == 0 and not list(tmp_path.iterdir()), (fmt, take)


def test_exports_beyond_their_slots_are_refused_until_one_ends(server, conn, db_url, monkeypatch):
    """A download holds its thread and its snapshot's connection while the client reads, after
    the request's own slot is given back; so exports have a cap of their own (MAX_EXPORTS), and
    one more is refused at once with 503 and Retry-After, holding nothing. Found in review: the
    cap was missing, and enough slow downloads could take every thread and connection."""
    dataset_id, _ = generate(conn, db_url, "popular", 1000, seed=91)
    monkeypatch.setitem(server.app.config, "MAX_EXPORTS", 2)
    server.app.extensions.pop("heimdall.export_slots", None)   # sized on first use
    path = f"/api/training/synthetic/datasets/{dataset_id}/export"

    def start(fmt: str):
        environ = EnvironBuilder(path=path, query_string={"format": fmt}).get_environ()
        status, headers = [], {}

        def start_response(s, h, exc_info=None):
            status.append(s)
            headers.update(h)
        body = server.app(environ, start_response)
        return status[0], headers, body

    held = [start("parquet"), start("npz")]
    assert [s for s, _, _ in held] == ["200 OK"] * 2
    status, headers, body = start("parquet")
    assert status.startswith("503") and headers["Retry-After"] == "10"
    reply = json.loads(b"".join(body))
    assert reply["error"] == "too_many_exports" and "2 exports" in reply["message"]
    held[0][2].close()                       # a client finishes (or goes away)
    status, _, body = start("parquet")
    assert status == "200 OK"
    body.close()
    held[1][2].close()
    for _ in range(3):                       # every slot came back, also from HEAD requests
        environ = EnvironBuilder(path=path, method="HEAD").get_environ()
        assert server.app(environ, lambda s, h, e=None: held.append(s)) is not None
    assert held[-3:] == ["200 OK"] * 3
    held_now = [start("npz"), start("npz")]
    assert [s for s, _, _ in held_now] == ["200 OK"] * 2
    for _, _, body in held_now:
        body.close()


def test_the_reader_and_the_writer_share_postgresql_s_epoch():
    from heimdall_synth.service.storage.copy_rows import PG_EPOCH  # the writer's (the reader does not import it)
    assert export_columns.PG_EPOCH_US == int(PG_EPOCH.timestamp()) * 1_000_000


def test_a_killed_npz_export_leaves_nothing_the_next_one_keeps(conn, db_url, tmp_path):
    """The NPZ column files were spooled in a named temporary folder beside the output, which
    a SIGKILL left behind (with the hidden partial file). The column files are anonymous now;
    the partial output of a killed export is removed by the next export into the folder."""
    dataset_id, _ = generate(conn, db_url, "killed-export", 60_000, seed=5)
    out = tmp_path / "out"
    out.mkdir()
    env = {**os.environ, "DATABASE_URL": db_url}
    child = subprocess.Popen([sys.executable, "-m", "heimdall_synth.service.cli", "export",
                              dataset_id, "--format", "npz", "--out", str(out / "a.npz")],
                             env=env, stderr=subprocess.PIPE, text=True)
    try:
        for line in child.stderr:
            if line.startswith("progress: read") and not line.startswith("progress: read 0 "):
                break  # reading rows: the column files are being written
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    left = sorted(p.name for p in out.iterdir())
    assert all(p.endswith(".partial") for p in left) and not any((out / p).is_dir()
                                                                 for p in left), left
    export.export_file(db_url, dataset_id, export.FORMATS["npz"], out / "b.npz")
    assert sorted(p.name for p in out.iterdir()) == ["b.npz"]
