"""Reading iq_raw datasets: a sample's IQ over HTTP as .npy (NumPy) and SigMF (the sigmf
package), the whole dataset's IQ as a Zarr store from the CLI (zarr), and the operators' cases
with iq_raw on the command line. Every file is loaded by its reference reader and compared with
the IQ the engine serves."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from heimdall_synth.service.engine.signals import sample_signal
from heimdall_synth.service.storage.database import connect
from tests.helpers import cli, cli_json, dataset_row

SHORT = {"dataset_type": "iq_raw", "iq_sample_rate_hz": 25_000, "iq_duration_ms": 20}
SHORT_FLAGS = ("--dataset-type", "iq_raw", "--iq-sample-rate-hz", 25_000, "--iq-duration-ms", 20)


@pytest.fixture
def iq_dataset(api):
    created = api.generate(name="signals", num_samples=12, seed=8, iq_storage="postgres",
                           **SHORT)
    assert api.wait(created["job_id"])["status"] == "completed"
    return created["dataset_id"]


def test_a_samples_iq_as_npy_and_sigmf(api, db_url, iq_dataset, tmp_path):
    import sigmf
    path = f"/datasets/{iq_dataset}/samples/3/iq"
    npy = api.get(path)
    assert npy.status == 200 and npy.headers["Content-Type"] == "application/octet-stream"
    assert npy.headers["X-Sample-Rate-Hz"] == "25000.0"
    x = np.load(io.BytesIO(npy.raw), allow_pickle=False)
    with connect(db_url) as conn:
        want = sample_signal(conn, iq_dataset, 3)
    assert x.dtype == np.complex64 and np.array_equal(x, want.iq)
    assert x.shape == (len(want.receivers), 500)

    archive = api.get(path + "?format=sigmf")
    assert archive.status == 200 and archive.headers["Content-Type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(archive.raw)) as tar:
        tar.extractall(tmp_path, filter="data")
    meta_path = next(tmp_path.rglob("*.sigmf-meta"))
    recording = sigmf.sigmffile.fromfile(str(meta_path))
    assert recording.get_global_field("core:sample_rate") == 25_000.0
    assert recording.get_captures()[0]["core:frequency"] == want.frequency_hz
    samples = recording.read_samples()  # (IQ samples, channels)
    assert np.array_equal(samples.T.astype(np.complex64), want.iq)
    meta = json.loads(meta_path.read_text())
    assert [r["lat"] for r in meta["global"]["heimdall:receivers"]] == [
        r["lat"] for r in want.receivers]
    assert meta["annotations"][0]["heimdall:transmitter"] == want.transmitter


def test_iq_errors_name_their_field(api, iq_dataset):
    plain = api.generate(name="plain", num_samples=2, seed=1)
    api.wait(plain["job_id"])
    cases = [
        (f"/datasets/{plain['dataset_id']}/samples/0/iq", 409, "not_iq_raw", "dataset_type"),
        (f"/datasets/{iq_dataset}/samples/12/iq", 404, "not_found", "sample_index"),
        (f"/datasets/{iq_dataset}/samples/0/iq?format=wav", 422, "invalid_field", "format"),
        (f"/datasets/{iq_dataset}/samples/0/iq?limit=3", 422, "invalid_field", "limit"),
        ("/datasets/3c0ffee0-0000-4000-8000-000000000000/samples/0/iq", 404, "not_found",
         "dataset_id"),
        ("/datasets/nope/samples/0/iq", 422, "invalid_field", "dataset_id"),
    ]
    for path, status, code, field in cases:
        reply = api.get(path)
        assert (reply.status, reply.json["error"], reply.json.get("field")) == (
            status, code, field), path


def test_the_operators_cases_with_iq_raw_on_the_command_line(db, tmp_path):
    import zarr
    job = cli_json(db, "generate", "--name", "grow", "--num-samples", 5, "--seed", 7,
                   *SHORT_FLAGS)
    assert job["status"] == "completed" and job["generated"] == 5
    exp = cli_json(db, "expand", "grow", "--num-samples", 300)  # 1000: over HTTP
    assert (exp["status"], exp["samples_offset"], exp["generated"]) == ("completed", 5, 300)
    row = dataset_row(db, "grow")
    assert (row["num_samples"], row["actual_count"], row["dataset_type"]) == (305, 305,
                                                                               "iq_raw")
    strict = cli(db, "--json", "expand", "grow", "--num-samples", 50, "--min-snr-db", 30,
                 "--min-receivers", 7, "--max-gdop", 10, "--max-attempts", 400)
    assert strict.returncode == 1 and "min_receivers" in strict.stderr
    short = json.loads(strict.stdout)
    assert short["stopped_reason"] == "max_attempts" and short["generated"] < 50
    total = 305 + short["generated"]
    assert cli_json(db, "validate", "grow")["ok"] is True

    out = tmp_path / "export"
    done = cli_json(db, "export", "grow", "--iq", "--out", out, timeout=300)
    assert done["rows"] == total and done["iq_shape"] == [total, 7, 500]
    store = zarr.open_array(str(out / "iq.zarr"), mode="r")
    assert store.shape == (total, 7, 500) and store.dtype == np.complex64
    assert store.attrs["sample_rate_hz"] == 25_000.0
    import pyarrow.parquet as pq
    features = pq.read_table(out / "features.parquet")
    assert features.num_rows == total and "iq_snr_db_mean" in features.column_names
    with connect(db) as conn:
        ds = conn.execute("SELECT id FROM heimdall.synthetic_datasets").fetchone()[0]
        for index in (0, 4, 5, total - 1):
            want = sample_signal(conn, ds, index).iq
            assert np.array_equal(store[index, :len(want)], want)
            assert not store[index, len(want):].any()  # padding receivers are zeros
    again = cli(db, "export", "grow", "--iq", "--out", out)
    assert again.returncode == 4 and "exists" in again.stderr

    pictures = cli_json(db, "report", "grow", "--out", tmp_path / "report")["files"]
    assert {p.rsplit("/", 1)[1] for p in pictures} >= {
        "sample-0-spectrum.png", "sample-0-spectrogram.png", "sample-0-envelope.png"}

    plain = cli_json(db, "generate", "--name", "plain", "--num-samples", 3, "--seed", 1)
    refused = cli(db, "export", plain["dataset_id"], "--iq", "--out", tmp_path / "no")
    assert refused.returncode == 4 and "only iq_raw" in refused.stderr
