"""Accepted kernel samples -> one PostgreSQL binary COPY buffer, with no per-row Python.

``pack_feature_rows`` turns a whole ``AttemptBatch`` of accepted samples into the bytes of
``COPY heimdall.measurement_features (COLUMNS) FROM STDIN (FORMAT BINARY)``; ``copy_batch`` sends
them. Rows are built as one big-endian NumPy structured array filled column by column; rows
whose receiver arrays are shorter than the batch's slots (random receivers: padding slots,
``rx_id == -1``, are not stored) are compacted by a small Numba loop (see "packing" below).

Binary COPY format (PostgreSQL docs, "COPY ... File Formats"): the signature
``PGCOPY\\n\\377\\r\\n\\0``, int32 flags, int32 header-extension length; per tuple an int16
field count then, per field, an int32 byte length (-1 = NULL) and the value in network byte
order; trailer int16 -1. An array value: int32 ndim, int32 has-nulls, int32 element type OID,
per dimension int32 size and int32 lower bound (1), then per element int32 length and value.
timestamptz is int64 microseconds since 2000-01-01 UTC; uuid is its 16 bytes.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import numpy as np
from numba import njit

from heimdall_synth.kernel.defaults import IQ_AGGREGATES
from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS as IQ_FEATURE_NAMES

#: The COPY target columns, in the order their values are written.
SCALAR_COLUMNS = (
    "recording_session_id", "dataset_id", "sample_index", "attempt_index", "job_id", "created_at",
    "tx_latitude", "tx_longitude", "tx_altitude_m", "tx_power_dbm", "frequency_hz", "tx_known",
    "num_receivers_in_sample", "num_receivers_detected", "mean_snr_db", "gdop", "hdop", "crb_m",
    "overall_confidence", "split",
)
#: Per-receiver array columns: (column, element type, element OID). The column name is also the
#: AttemptBatch attribute holding the values (attempts x max receivers).
ARRAY_COLUMNS = (
    ("rx_id", ">i2", 21), ("rx_lat", ">f8", 701), ("rx_lon", ">f8", 701),
    ("rx_alt_m", ">f4", 700), ("distance_km", ">f4", 700), ("signal_present", "u1", 16),
    ("rssi_dbm", ">f4", 700), ("snr_db", ">f4", 700), ("rssi_std_db", ">f4", 700),
    ("rssi_min_dbm", ">f4", 700), ("rssi_max_dbm", ">f4", 700), ("noise_floor_dbm", ">f4", 700),
    ("psd_dbm_per_hz", ">f4", 700), ("freq_offset_hz", ">f4", 700),
)
#: iq_raw rows also carry the features measured from each receiver's IQ (kernel.iq_features):
#: one per-receiver array column per feature and aggregate over the measurement windows.
IQ_FEATURE_COLUMNS = tuple((name, ">f4", 700) for name in IQ_FEATURE_NAMES)
COLUMNS = SCALAR_COLUMNS + tuple(name for name, _, _ in ARRAY_COLUMNS)
IQ_COLUMNS = COLUMNS + tuple(name for name, _, _ in IQ_FEATURE_COLUMNS)


def copy_sql(columns=COLUMNS) -> str:
    return (f"COPY heimdall.measurement_features ({', '.join(columns)}) "
            "FROM STDIN (FORMAT BINARY)")


COPY_SQL = copy_sql(COLUMNS)
IQ_COPY_SQL = copy_sql(IQ_COLUMNS)

_SCALAR_TYPES = {  # big-endian storage type of each scalar column
    "recording_session_id": ("u1", (16,)), "dataset_id": ("u1", (16,)), "job_id": ("u1", (16,)),
    "sample_index": ">i8", "attempt_index": ">i8", "created_at": ">i8",
    "tx_latitude": ">f8", "tx_longitude": ">f8", "tx_altitude_m": ">f4", "tx_power_dbm": ">f4",
    "frequency_hz": ">f8", "tx_known": "u1", "num_receivers_in_sample": ">i2",
    "num_receivers_detected": ">i2", "mean_snr_db": ">f4", "gdop": ">f8", "hdop": ">f8",
    "crb_m": ">f8", "overall_confidence": ">f4", "split": ">i2",
}
# Scalar columns read straight from the batch: column -> AttemptBatch attribute. The stored
# tx_power_dbm is the EFFECTIVE power.
_FROM_BATCH = {
    "attempt_index": "attempt_index", "tx_latitude": "tx_latitude",
    "tx_longitude": "tx_longitude", "tx_altitude_m": "tx_altitude_m",
    "tx_power_dbm": "tx_power_dbm", "num_receivers_in_sample": "n_receivers",
    "num_receivers_detected": "n_detected", "mean_snr_db": "mean_snr_db", "gdop": "gdop",
    "hdop": "hdop", "crb_m": "crb_m", "overall_confidence": "overall_confidence",
}

SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # signature, flags 0, no header extension
TRAILER = b"\xff\xff"
PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_SAMPLE_INDEX = 2**62 - 1  # keeps the RFC 4122 variant bits of recording ids intact
_VARIANT = np.uint64(0x8000000000000000)
COPY_CHUNK = 1 << 20


# ----- identifiers (dataset ids: storage.ids) -----------------------------------------------

def recording_session_id_bytes(dataset_id: uuid.UUID, indices) -> np.ndarray:
    """(n, 16) uint8: bytes 0..7 of the dataset id, then big-endian (2**63 | sample_index)."""
    indices = np.asarray(indices, dtype=np.int64).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() > MAX_SAMPLE_INDEX):
        raise ValueError(f"sample indices must lie in [0, {MAX_SAMPLE_INDEX}]")
    out = np.empty((indices.size, 16), np.uint8)
    out[:, :8] = np.frombuffer(dataset_id.bytes[:8], np.uint8)
    out[:, 8:] = (indices.astype(np.uint64) | _VARIANT).astype(">u8").view(np.uint8).reshape(-1, 8)
    return out


def recording_session_ids(dataset_id: uuid.UUID, indices) -> list[uuid.UUID]:
    """The recording ids of these sample indices of a dataset (deterministic, increasing)."""
    return [uuid.UUID(bytes=row.tobytes())
            for row in recording_session_id_bytes(dataset_id, indices)]


def recording_session_id(dataset_id: uuid.UUID, sample_index: int) -> uuid.UUID:
    return recording_session_ids(dataset_id, [sample_index])[0]


# ----- packing --------------------------------------------------------------------------------
#
# Every row is first laid out at its largest size (all receiver slots), directly in the output
# buffer, as one big-endian NumPy structured array: a template row with the values shared by all
# rows, then each per-row column assigned as a whole. A row's fields form contiguous segments:
# the 33 scalar fields, then per array column its int32 length, the array header and one (int32
# length, value) pair per receiver slot. When every row has all receivers this IS the COPY data.
# Otherwise (random receivers) each row's receivers are first moved to the leading slots, so a
# shorter row keeps a prefix of each array segment, and a Numba loop compacts the rows in place.

def _row_dtype(slots: int, null_job: bool, arrays=ARRAY_COLUMNS) -> np.dtype:
    """Field count; (int32 length, value) per scalar column (a NULL has only the length); per
    array column: int32 length, ndim, has-nulls, element OID, size, lower bound, the slots."""
    fields = [("nfields", ">i2")]
    for name in SCALAR_COLUMNS:
        fields.append((f"{name}__len", ">i4"))
        if not (null_job and name == "job_id"):
            fields.append((name, _SCALAR_TYPES[name]))
    for name, element_type, _ in arrays:
        fields += [(f"{name}__{part}", ">i4")
                   for part in ("len", "ndim", "nulls", "oid", "size", "lbound")]
        fields.append((name, [("len", ">i4"), ("value", element_type)], (slots,)))
    return np.dtype(fields)


def _template_row(dtype, slots, dataset_id, job_id, frequency_hz, created_us,
                  arrays=ARRAY_COLUMNS) -> np.ndarray:
    """The bytes of a row holding every value that all rows share (arrays sized for all slots)."""
    row = np.zeros(1, dtype)
    row["nfields"] = len(SCALAR_COLUMNS) + len(arrays)
    for name in SCALAR_COLUMNS:
        row[f"{name}__len"] = dtype[name].itemsize if name in dtype.names else -1
    row["dataset_id"] = np.frombuffer(dataset_id.bytes, np.uint8)
    if job_id is not None:
        row["job_id"] = np.frombuffer(job_id.bytes, np.uint8)
    row["created_at"] = created_us
    row["frequency_hz"] = frequency_hz
    row["tx_known"] = 1
    for name, element_type, oid in arrays:
        w = np.dtype(element_type).itemsize
        row[f"{name}__len"] = 20 + slots * (4 + w)
        row[f"{name}__ndim"] = 1
        row[f"{name}__oid"] = oid
        row[f"{name}__size"] = slots
        row[f"{name}__lbound"] = 1
        row[name]["len"] = w
    return row.view(np.uint8)


def _timestamp_us(created_at: datetime | None) -> int:
    created_at = datetime.now(timezone.utc) if created_at is None else created_at
    if created_at.tzinfo is None:
        raise ValueError("created_at must be timezone-aware")
    delta = created_at - PG_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@njit(cache=True, nogil=True)
def _compact(buf, first, itemsize, starts, lengths):
    """Rows of ``itemsize`` bytes lie at ``buf[first:]``; keep the first ``lengths[i, s]`` bytes
    of segment s (at ``starts[s]`` in the row) of every row i, packed one after the other in
    place. Returns the end position. Data only moves backwards, so a forward copy is safe."""
    pos = first
    for i in range(lengths.shape[0]):
        row = first + i * itemsize
        for s in range(starts.shape[0]):
            src = row + starts[s]
            for k in range(lengths[i, s]):
                buf[pos + k] = buf[src + k]
            pos += lengths[i, s]
    return pos


def pack_feature_rows(batch, dataset_id: uuid.UUID, first_sample_index: int,
                      job_id: uuid.UUID | None, frequency_hz: float,
                      created_at: datetime | None = None, rows=None,
                      iq_features=None, split=None) -> memoryview:
    """The binary COPY data (for ``COPY_SQL``) of every row of ``batch`` (or of ``rows``).

    ``batch`` is an AttemptBatch of accepted samples only (``run_attempts(...).accepted()``), in
    attempt order; row k becomes sample ``first_sample_index + k``. Or ``rows`` (an index array
    of accepted attempts, in attempt order) picks them out of a whole kernel batch without
    copying it first. ``job_id`` None stores NULL. ``created_at`` (timezone-aware; default now)
    is stored on every row. Receiver slots with ``rx_id == -1`` (padding) are not stored.
    ``iq_features`` (iq_raw: ``kernel.iq_features.measure`` of the rows, (rows, slots, features,
    aggregates)) adds the IQ feature columns: the data is then for ``IQ_COPY_SQL``. ``split``:
    each row's split code (``kernel.splits.split_of`` with the dataset's split fields; default:
    with the table's default fields).
    Returns a memoryview over a fresh uint8 array.
    """
    arrays = ARRAY_COLUMNS if iq_features is None else ARRAY_COLUMNS + IQ_FEATURE_COLUMNS
    if rows is not None:
        batch = _RowView(batch, np.asarray(rows))
    if not np.all(batch.valid):
        raise ValueError("pack only accepted samples: pass batch.accepted()")
    n, slots = batch.rx_id.shape
    keep = batch.rx_id >= 0
    counts = keep.sum(axis=1)
    if not np.array_equal(counts, batch.n_receivers):
        raise ValueError("receiver slots with rx_id >= 0 disagree with n_receivers")
    full = slots > 0 and bool(np.all(counts == slots))
    order = None  # receivers to the leading slots, in slot order, unless they are there already
    if not full and not np.array_equal(keep, np.arange(slots) < counts[:, None]):
        order = np.argsort(~keep, axis=1, kind="stable")

    dtype = _row_dtype(slots, job_id is None, arrays)
    first = len(SIGNATURE)
    out = np.empty(first + n * dtype.itemsize + len(TRAILER), np.uint8)
    out[:first] = np.frombuffer(SIGNATURE, np.uint8)
    template = _template_row(dtype, slots, dataset_id, job_id, float(frequency_hz),
                             _timestamp_us(created_at), arrays)
    # Broadcast the template's bytes (much faster than a structured assignment).
    out[first:first + n * dtype.itemsize].reshape(n, dtype.itemsize)[:] = template
    rec = np.ndarray(n, dtype, buffer=out, offset=first)
    sample_index = np.arange(first_sample_index, first_sample_index + n, dtype=np.int64)
    rec["recording_session_id"] = recording_session_id_bytes(dataset_id, sample_index)
    rec["sample_index"] = sample_index
    for column, attribute in _FROM_BATCH.items():
        rec[column] = getattr(batch, attribute)  # NumPy casts to the big-endian column type
    if split is None:
        split = default_split(batch.tx_latitude, batch.tx_longitude)
    rec["split"] = split
    for name, _, _ in ARRAY_COLUMNS:
        values = getattr(batch, name)
        rec[name]["value"] = values if order is None else np.take_along_axis(values, order, 1)
    if iq_features is not None:
        if iq_features.shape[:2] != (n, slots):
            raise ValueError(f"iq_features are for {iq_features.shape[:2]} rows x slots, the "
                             f"rows are {(n, slots)}")
        for k, (name, _, _) in enumerate(IQ_FEATURE_COLUMNS):
            values = iq_features[:, :, k // len(IQ_AGGREGATES), k % len(IQ_AGGREGATES)]
            rec[name]["value"] = (values if order is None
                                  else np.take_along_axis(values, order, 1))

    end = len(out) - len(TRAILER)
    if not full:
        # Segment lengths: the scalar part; per array its length field + 20-byte header +
        # (4 + w) per element, or only length, ndim, has-nulls and OID (16 bytes) when empty.
        starts = [0] + [dtype.fields[f"{name}__len"][1] for name, _, _ in arrays]
        lengths = np.empty((n, len(starts)), np.int64)
        lengths[:, 0] = starts[1]
        for k, (name, element_type, _) in enumerate(arrays, start=1):
            lengths[:, k] = np.where(counts > 0,
                                     24 + counts * (4 + np.dtype(element_type).itemsize), 16)
            rec[f"{name}__len"] = lengths[:, k] - 4
            rec[f"{name}__ndim"] = counts > 0
            rec[f"{name}__size"] = counts
        end = _compact(out, first, dtype.itemsize, np.array(starts, np.int64), lengths)
    out[end:end + len(TRAILER)] = np.frombuffer(TRAILER, np.uint8)
    return memoryview(out)[:end + len(TRAILER)]


def default_split(lat, lon):
    """Split codes with the parameter table's split fields."""
    from heimdall_synth.kernel.defaults import PARAMS_BY_NAME
    from heimdall_synth.kernel.splits import split_of
    return split_of(lat, lon, *(PARAMS_BY_NAME[name].default for name in (
        "split_cell_m", "split_train", "split_validation")))


class _RowView:
    """The rows ``index`` of an AttemptBatch, taken column by column as they are read."""

    def __init__(self, batch, index):
        self._batch, self._index = batch, index

    def __getattr__(self, name):
        return getattr(self._batch, name)[self._index]


def row_data_bytes(buffer) -> int:
    """Bytes of row data in ``pack_feature_rows`` output (one buffer, a list, or None): what a
    dataset's ``storage_size_bytes`` adds up (field data and lengths; not PostgreSQL's tuple
    headers, page overhead or indexes). O(1): no row is read."""
    views = [] if buffer is None else buffer if isinstance(buffer, list) else [buffer]
    return sum(len(v) - len(SIGNATURE) - len(TRAILER) for v in views)


class CopyStopped(Exception):
    """A COPY given up between two chunks because its caller said stop (its rows roll back)."""


def copy_batch(cursor, buffer, chunk_size: int = COPY_CHUNK, stop=None, sql=COPY_SQL) -> int:
    """COPY ``pack_feature_rows`` data into heimdall.measurement_features; rows written.

    ``buffer`` is one packed buffer, or a list of them sent as ONE statement (each keeps its
    rows; the signatures and trailers between them are dropped). Runs inside the cursor's
    current transaction: the caller commits (together with the dataset's counters, contract
    C3). An overlapping sample index fails the COPY with psycopg.errors.UniqueViolation.
    ``sql``: the COPY statement the data was packed for (``IQ_COPY_SQL``, ``IQ_CAPTURES_SQL``).
    ``stop``: a callable asked between chunks; when it returns true the COPY is abandoned with
    CopyStopped (a cancelled job does not wait for a whole batch to be sent).
    """
    buffers = buffer if isinstance(buffer, list) else [buffer]
    views = [memoryview(b).cast("B") for b in buffers]
    rows = [v[len(SIGNATURE):len(v) - len(TRAILER)] for v in views]
    with cursor.copy(sql) as copy:
        copy.write(SIGNATURE)
        for view in rows:
            for start in range(0, len(view), chunk_size):
                if stop is not None and stop():
                    raise CopyStopped()
                copy.write(view[start:start + chunk_size])
        copy.write(TRAILER)
    return cursor.rowcount
