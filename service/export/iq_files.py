"""IQ as files (docs/SIGNALS.md): the single-sample files a reader gets, and the Zarr store
of many (the stored formats are ``service.storage.capture_rows``).

* ``npy_bytes``: a NumPy ``.npy`` file of (receivers, samples) complex64.
* ``sigmf_archive``: a SigMF recording (a tar of ``<name>.sigmf-data`` and ``<name>.sigmf-meta``):
  the receivers as interleaved channels of ``cf32_le`` samples, the sample rate and carrier
  frequency in the global object and its one capture, each receiver's position and the true
  transmitter's as ``heimdall:`` fields, and the transmitter also as an annotation over the
  whole recording, as SigMF labels a capture's content.
* ``ZarrIQWriter``: a Zarr v3 store of many samples (samples, receivers, IQ samples), written
  block by block so memory holds one block.
"""

from __future__ import annotations

import io
import json
import tarfile

import numpy as np


def npy_bytes(x: np.ndarray) -> bytes:
    """A ``.npy`` file of x as complex64 (receivers, samples)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(x, dtype=np.complex64), allow_pickle=False)
    return buf.getvalue()


def sigmf_archive(name: str, x: np.ndarray, sample_rate_hz: float, frequency_hz: float,
                  receivers: list[dict], transmitter: dict, description: str) -> bytes:
    """A SigMF archive (tar bytes) of one sample: x (receivers, samples) as interleaved
    channels; ``receivers`` one dict each (id, lat, lon, alt_m), ``transmitter`` (lat, lon,
    alt_m, power_dbm)."""
    x = np.ascontiguousarray(x, dtype=np.complex64)
    channels, samples = x.shape
    data = x.T.astype("<c8").tobytes()  # sample-major: channel values of one instant together
    meta = {
        "global": {
            "core:datatype": "cf32_le",
            "core:sample_rate": float(sample_rate_hz),
            "core:num_channels": int(channels),
            "core:version": "1.2.0",
            "core:description": description,
            "core:recorder": "heimdall-synth (synthetic)",
            "core:extensions": [{"name": "heimdall", "version": "1.0.0", "optional": True}],
            "heimdall:receivers": receivers,
            "heimdall:transmitter": transmitter,
            "heimdall:units": "sqrt(mW)",
        },
        "captures": [{"core:sample_start": 0, "core:frequency": float(frequency_hz)}],
        "annotations": [{
            "core:sample_start": 0, "core:sample_count": int(samples),
            "core:label": "transmitter",
            "core:comment": (f"true transmitter at {transmitter['lat']:.6f}, "
                             f"{transmitter['lon']:.6f}, {transmitter['alt_m']:.1f} m"),
            "heimdall:transmitter": transmitter,
        }],
    }
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for suffix, payload in ((".sigmf-meta", json.dumps(meta, indent=2).encode()),
                                (".sigmf-data", data)):
            info = tarfile.TarInfo(f"{name}/{name}{suffix}")
            info.size = len(payload)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(payload))
    return out.getvalue()


class ZarrIQWriter:
    """A Zarr v3 store of IQ, samples x receivers x IQ samples (complex64), written block by
    block so memory holds one block: ``append`` each block of consecutive samples (zeros in a
    sample's padding receivers), then ``close``. The store's attributes carry the sample rate,
    the carrier frequency and the first sample index."""

    def __init__(self, path, samples: int, receivers: int, capture: int, sample_rate_hz: float,
                 frequency_hz: float, first_sample: int = 0, chunk_samples: int = 16):
        import zarr  # the iq extra
        self.array = zarr.create_array(
            store=str(path), shape=(samples, receivers, capture), dtype="complex64",
            chunks=(min(chunk_samples, max(samples, 1)), receivers, capture), fill_value=0j,
            overwrite=False, attributes={"sample_rate_hz": float(sample_rate_hz),
                                         "frequency_hz": float(frequency_hz),
                                         "first_sample_index": int(first_sample),
                                         "units": "sqrt(mW)", "axes": ["sample", "receiver",
                                                                      "iq_sample"]})
        self.written = 0

    def append(self, block: np.ndarray) -> None:
        block = np.asarray(block, dtype=np.complex64)
        end = self.written + block.shape[0]
        if end > self.array.shape[0]:
            raise ValueError(f"the store holds {self.array.shape[0]} samples; {end} written")
        self.array[self.written:end] = block
        self.written = end

    def close(self) -> None:
        if self.written != self.array.shape[0]:
            raise ValueError(f"{self.written} of {self.array.shape[0]} samples were written")
