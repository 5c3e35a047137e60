"""IQ as files (service/export/iq_files.py) and the stored formats (storage/capture_rows.py):
the formats round-trip within their precision, and a sample's .npy and SigMF files load in NumPy and in the sigmf package."""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest
from sigmf import sigmffile

from heimdall_synth.service.export import iq_files
from heimdall_synth.service.storage.capture_rows import decode_capture, encode_captures, served
from tests.test_iq import strong_samples


@pytest.fixture(scope="module")
def sample():
    cfg, batch, rows, x = strong_samples(1)
    return cfg, batch, int(rows[0]), x[0, :batch.n_receivers[rows[0]]]


def test_cf32_is_exact_and_ci16_within_half_a_count(sample):
    _, _, _, x = sample
    data, scales = encode_captures(x, "cf32")
    assert (scales == 1.0).all()
    for capture, raw in zip(x, data):
        assert np.array_equal(decode_capture(raw.tobytes(), "cf32", 1.0), capture)
    data, scales = encode_captures(x, "ci16")
    assert data.shape == (len(x), 4 * x.shape[1])
    for capture, raw, scale in zip(x, data, scales):
        back = decode_capture(raw.tobytes(), "ci16", scale)
        err = np.maximum(np.abs(back.real - capture.real), np.abs(back.imag - capture.imag))
        assert err.max() <= 0.5 * scale * 1.01  # (and complex64's own rounding)
        assert max(np.abs(capture.real).max(), np.abs(capture.imag).max()) == pytest.approx(
            32767 * scale)
        assert np.array_equal(served(capture, "ci16"), back)  # what readers get
    with pytest.raises(ValueError, match="iq_format"):
        encode_captures(x, "ci8")


def test_npy_loads_in_numpy(sample):
    _, _, _, x = sample
    loaded = np.load(io.BytesIO(iq_files.npy_bytes(x)))
    assert loaded.dtype == np.complex64 and np.array_equal(loaded, x)


def test_sigmf_loads_in_the_sigmf_package(sample, tmp_path):
    cfg, batch, row, x = sample
    receivers = [{"id": j, "lat": float(batch.rx_lat[row, j]), "lon": float(batch.rx_lon[row, j]),
                  "alt_m": float(batch.rx_alt_m[row, j])} for j in range(len(x))]
    tx = {"lat": float(batch.tx_latitude[row]), "lon": float(batch.tx_longitude[row]),
          "alt_m": float(batch.tx_altitude_m[row]), "power_dbm": float(batch.tx_power_dbm[row])}
    archive = tmp_path / "sample-0.sigmf"
    archive.write_bytes(iq_files.sigmf_archive("sample-0", x, 50_000.0,
                                               cfg.frequency_mhz * 1e6, receivers, tx,
                                               "a synthetic sample"))
    recording = sigmffile.fromarchive(str(archive))
    assert recording.get_global_field("core:sample_rate") == 50_000.0
    assert recording.get_global_field("core:num_channels") == len(x)
    assert recording.get_captures()[0]["core:frequency"] == cfg.frequency_mhz * 1e6
    samples = recording.read_samples()
    assert samples.shape == (x.shape[1], len(x))
    np.testing.assert_array_equal(samples.T, x)
    note = recording.get_annotations()[0]
    assert note["heimdall:transmitter"] == tx and note["core:sample_count"] == x.shape[1]
    with tarfile.open(archive) as tar:
        meta = json.load(tar.extractfile("sample-0/sample-0.sigmf-meta"))
    assert meta["global"]["heimdall:receivers"] == receivers


def test_a_zarr_store_written_in_blocks_reads_back_in_zarr(tmp_path):
    import zarr
    cfg, batch, rows, x = strong_samples(5, seed=12)
    writer = iq_files.ZarrIQWriter(tmp_path / "iq.zarr", len(rows), x.shape[1], x.shape[2],
                                   50_000.0, cfg.frequency_mhz * 1e6, first_sample=100,
                                   chunk_samples=2)
    for block in (x[:2], x[2:3], x[3:]):
        writer.append(block)
    writer.close()
    store = zarr.open_array(str(tmp_path / "iq.zarr"), mode="r")
    assert store.shape == x.shape and store.dtype == np.complex64
    assert np.array_equal(store[:], x) and store.attrs["first_sample_index"] == 100
    short = iq_files.ZarrIQWriter(tmp_path / "short.zarr", 3, 2, 4, 1.0, 1.0)
    short.append(np.zeros((2, 2, 4)))
    with pytest.raises(ValueError, match="2 of 3 samples"):
        short.close()
    with pytest.raises(ValueError, match="holds 3 samples"):
        short.append(np.zeros((2, 2, 4)))
