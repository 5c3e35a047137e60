"""IQ captures of iq_raw samples: their stored formats and their binary COPY rows.

With ``iq_storage: postgres`` every receiver's capture of a sample is a row of
``heimdall.iq_captures`` (dataset_id, sample_index, receiver, format, scale, iq), written by
binary COPY in the transaction of the sample's row (``service.engine.pipeline``).

Formats (``iq_format``), for stored and served IQ alike:
  ``cf32``: complex64 as synthesized, interleaved float32 I and Q, little-endian; scale 1;
  ``ci16``: interleaved int16 I and Q, little-endian, with one scale per capture (sqrt(mW) per
  count): the capture's largest component maps to 32767, so rounding costs at most half a
  count, about 90 dB below the peak.
Served IQ is always ``decode(encode(synthesized))``, so a sample read back from the table and a
sample synthesized again give the same complex64 values.
"""

from __future__ import annotations

import uuid

import numpy as np

from heimdall_synth.kernel.defaults import IQ_BYTES_PER_VALUE, IQ_FORMATS
from heimdall_synth.service.storage.copy_rows import SIGNATURE, TRAILER

CI16_FULL_SCALE = 32767
IQ_CAPTURES_SQL = ("COPY heimdall.iq_captures (dataset_id, sample_index, receiver, format, "
                   "scale, iq) FROM STDIN (FORMAT BINARY)")


def _check_format(fmt: str) -> None:
    if fmt not in IQ_FORMATS:
        raise ValueError(f"iq_format must be one of {list(IQ_FORMATS)}, got {fmt!r}")


def encode_captures(x: np.ndarray, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """Captures x (complex, (..., samples)) in ``fmt``: (bytes as uint8 (..., samples x
    bytes per value), scales (...)), vectorized over the leading axes."""
    _check_format(fmt)
    x = np.asarray(x, dtype=np.complex64)
    lead = x.shape[:-1]
    if fmt == "cf32":
        data = np.ascontiguousarray(x).astype("<c8", copy=False).view(np.uint8)
        return data.reshape(*lead, -1), np.ones(lead)
    parts = np.ascontiguousarray(x).view(np.float32).astype(np.float64)  # I, Q interleaved
    peak = np.abs(parts).max(axis=-1) if x.shape[-1] else np.zeros(lead)
    scale = np.where(peak > 0.0, peak / CI16_FULL_SCALE, 1.0)
    counts = np.rint(parts / scale[..., None]).astype("<i2")
    return counts.view(np.uint8).reshape(*lead, -1), scale


def decode_capture(data, fmt: str, scale: float) -> np.ndarray:
    """complex64 samples of one capture's bytes in ``fmt``."""
    _check_format(fmt)
    if fmt == "cf32":
        return np.frombuffer(data, "<c8").astype(np.complex64)
    parts = np.frombuffer(data, "<i2").reshape(-1, 2).astype(np.float64) * scale
    return (parts[:, 0] + 1j * parts[:, 1]).astype(np.complex64)


def served(x: np.ndarray, fmt: str) -> np.ndarray:
    """What a reader gets for synthesized captures x (..., samples): their ``fmt`` decoded."""
    if fmt == "cf32":
        return np.asarray(x, dtype=np.complex64)
    data, scale = encode_captures(x, fmt)
    parts = data.view("<i2").astype(np.float64) * scale[..., None]
    return (parts[..., 0::2] + 1j * parts[..., 1::2]).astype(np.complex64)


def pack_capture_rows(x: np.ndarray, n_receivers, dataset_id: uuid.UUID,
                      first_sample_index: int, fmt: str) -> memoryview:
    """The binary COPY data (for ``IQ_CAPTURES_SQL``) of the captures of consecutive samples:
    x (samples, receiver slots, IQ samples) complex, receivers ``0 .. n_receivers[k] - 1`` of
    sample k (its receiver order; padding slots are not stored)."""
    n, slots, capture = x.shape
    n_receivers = np.asarray(n_receivers, np.int64)
    present = np.arange(slots)[None, :] < n_receivers[:, None]
    data, scales = encode_captures(x, fmt)
    width = capture * IQ_BYTES_PER_VALUE[fmt]
    dtype = np.dtype([
        ("nfields", ">i2"),
        ("dataset_len", ">i4"), ("dataset_id", "u1", (16,)),
        ("index_len", ">i4"), ("sample_index", ">i8"),
        ("receiver_len", ">i4"), ("receiver", ">i2"),
        ("format_len", ">i4"), ("format", "S4"),
        ("scale_len", ">i4"), ("scale", ">f8"),
        ("iq_len", ">i4"), ("iq", "u1", (width,)),
    ])
    sample, receiver = np.nonzero(present)  # sample-major: each sample's receivers in order
    rows = len(sample)
    out = np.empty(len(SIGNATURE) + rows * dtype.itemsize + len(TRAILER), np.uint8)
    out[:len(SIGNATURE)] = np.frombuffer(SIGNATURE, np.uint8)
    rec = np.ndarray(rows, dtype, buffer=out, offset=len(SIGNATURE))
    rec["nfields"] = 6
    rec["dataset_len"], rec["dataset_id"] = 16, np.frombuffer(dataset_id.bytes, np.uint8)
    rec["index_len"], rec["sample_index"] = 8, first_sample_index + sample
    rec["receiver_len"], rec["receiver"] = 2, receiver
    rec["format_len"], rec["format"] = 4, fmt.encode()
    rec["scale_len"], rec["scale"] = 8, scales[sample, receiver]
    rec["iq_len"], rec["iq"] = width, data[sample, receiver]
    out[-len(TRAILER):] = np.frombuffer(TRAILER, np.uint8)
    return memoryview(out)
