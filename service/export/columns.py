"""The exported columns, and the decoding of one chunk read as a row of binary arrays.

``table_columns`` reads heimdall.measurement_features' columns from the catalog; ``Layout``
builds the query that reads a chunk as ONE row of ``array_agg`` arrays and decodes it with
NumPy (``RawArray`` hands psycopg's binary arrays over as bytes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from psycopg import sql
from psycopg.adapt import Loader
from psycopg.pq import Format

from heimdall_synth.kernel.defaults import IQ_FEATURE_COLUMNS
from heimdall_synth.service.engine.request import ConflictError

# 2000-01-01 (PostgreSQL's epoch) in Unix microseconds; copy_rows.PG_EPOCH is the same instant,
# not imported: copy_rows loads Numba, which an export does not need.
PG_EPOCH_US = 946_684_800_000_000
_NIL_UUID = "00000000-0000-0000-0000-000000000000"


class ExportError(ConflictError):
    """A stored row the export cannot represent (a NULL value, receiver arrays of different
    lengths): HTTP 409 / CLI exit 4, naming the column."""

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message, [column] if column else [], code="not_exportable")


# ----------------------------------------------------------------------------- columns

# PostgreSQL type -> (wire dtype in binary COPY, exported dtype, array padding as SQL).
_TYPES = {
    "int2": (">i2", np.int16, "-1"), "int4": (">i4", np.int32, "-1"),
    "int8": (">i8", np.int64, "-1"), "float4": (">f4", np.float32, "'NaN'"),
    "float8": (">f8", np.float64, "'NaN'"), "bool": ("u1", np.bool_, "false"),
    "uuid": (("u1", (16,)), np.dtype("U36"), None),
    "timestamptz": (">i8", np.dtype("datetime64[us]"), None),
}
# The built-in types' OIDs (fixed in PostgreSQL's catalog), checked in every array's header.
_OIDS = {"int2": 21, "int4": 23, "int8": 20, "float4": 700, "float8": 701, "bool": 16,
         "uuid": 2950, "timestamptz": 1184}
ARRAY_OIDS = (1005, 1007, 1016, 1021, 1022, 1000, 2951, 1185)  # the same types' arrays


@dataclass(frozen=True)
class Column:
    """An exported column: its name, its (element) type, whether it is per receiver."""

    name: str
    pg_type: str
    element_oid: int | None  # arrays: the element type's OID, checked on every row

    @property
    def per_receiver(self) -> bool:
        return self.element_oid is not None

    @property
    def wire(self):
        return _TYPES[self.pg_type][0]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(_TYPES[self.pg_type][1])


def table_columns(conn, dataset_type: str = "feature_based") -> list[Column]:
    """The exported columns: the table's, in order, without dataset_id, and without the
    features measured from IQ unless the dataset is iq_raw (its rows alone have them)."""
    skipped = {"dataset_id"} | (set() if dataset_type == "iq_raw" else set(IQ_FEATURE_COLUMNS))
    rows = conn.execute(
        "SELECT a.attname, t.typname, e.typname, e.oid FROM pg_attribute a "
        "JOIN pg_type t ON t.oid = a.atttypid "
        "LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
        "WHERE a.attrelid = 'heimdall.measurement_features'::regclass AND a.attnum > 0 "
        "AND NOT a.attisdropped ORDER BY a.attnum").fetchall()
    columns = []
    for name, typname, element, element_oid in rows:
        if name in skipped:
            continue
        pg_type = element or typname
        if pg_type not in _TYPES or (element and _TYPES[pg_type][2] is None):
            raise ExportError(f"column {name} has type {typname}, which the export does not "
                              "support", name)
        columns.append(Column(name, pg_type, element_oid))
    return columns


@dataclass
class Chunk:
    """Rows [start, start + rows) of the export: name -> array (N x R for per-receiver
    columns; UUIDs as (rows, 16) bytes), plus a NULL mask for each UUID column."""

    start: int
    rows: int
    values: dict
    nulls: dict


class RawArray(Loader):
    """A binary array result as its bytes, for NumPy to decode (psycopg's own array loader
    makes a Python object per element). Copied: the result's memory is freed with it."""

    format = Format.BINARY

    def load(self, data) -> bytes:
        return bytes(data)


class Layout:
    """The query that reads one chunk as ONE row of arrays, and the vectorised decoder and
    checker of such a row.

    Each column comes as ``array_agg(column ORDER BY sample_index)`` in binary, taken as its
    raw bytes (``RawArray``): a PostgreSQL binary array (int32 ndim, int32 has-NULL flag,
    int32 element OID, per dimension int32 size and lower bound, then per element an int32
    length and the big-endian value). Per-receiver columns arrive with R slots each, so their
    aggregate is a 2-D (rows x R) array. With fixed-width elements and no NULL, the elements
    are a strided NumPy view: the header is compared whole, every length field at once, and
    the values are one ``astype``. When some rows have fewer receivers (``padded``) the query
    appends R - k padding elements to each array, k being the row's count of the first
    per-receiver column (rx_id). A NULL array, or one of another length than k (or not 1-D),
    makes array_agg fail (its rows would not stack into rows x R): padding never hides a
    ragged row. A NULL value or element sets the has-NULL flag. Either way the reader then
    asks the server which row and column it is.
    """

    def __init__(self, columns: list[Column], slots: int, padded: bool):
        self.columns, self.slots = columns, slots
        self.names, self.wires, aggregates = [], {}, []
        receivers = sql.Identifier(next(c.name for c in columns if c.per_receiver))

        def add(name, wire, oid, expr):
            self.names.append(name)
            self.wires[name] = (np.dtype(wire), oid)
            aggregates.append(sql.SQL("array_agg({} ORDER BY sample_index)")
                              .format(expr))

        for c in columns:
            ident = sql.Identifier(c.name)
            if c.pg_type == "uuid":  # may be NULL (job_id of rows COPYed without a job)
                add(c.name, c.wire, _OIDS[c.pg_type], sql.SQL("coalesce({}, {}::uuid)").format(
                    ident, sql.Literal(_NIL_UUID)))
                add(f"{c.name}__isnull", "u1", _OIDS["bool"],
                    sql.SQL("{} IS NULL").format(ident))
            elif not c.per_receiver:
                add(c.name, c.wire, _OIDS[c.pg_type], ident)
            else:
                whole = ident
                if padded:
                    whole = sql.SQL("{0} || array_fill({1}, ARRAY[{2} - f.__receivers])").format(
                        ident, sql.SQL(f"{_TYPES[c.pg_type][2]}::{c.pg_type}"),
                        sql.Literal(slots))
                add(c.name, c.wire, c.element_oid, whole)
        self.select = sql.SQL(", ").join(aggregates)
        self.extra = (sql.SQL(", cardinality({}) AS __receivers").format(receivers) if padded
                      else sql.SQL(""))
        self.per_receiver = {c.name for c in columns if c.per_receiver}

    def statement(self, dataset_id, after: int, limit: int, split: int | None = None
                  ) -> sql.Composed:
        """The ``limit`` rows after sample_index ``after`` (of split code ``split`` only, when
        given), in order, as one row of arrays."""
        where = sql.SQL("") if split is None else sql.SQL(" AND split = {}").format(
            sql.Literal(int(split)))
        return sql.SQL(
            "SELECT {select} FROM (SELECT *{extra} FROM heimdall.measurement_features "
            "WHERE dataset_id = {dataset} AND sample_index > {after}{where} ORDER BY "
            "sample_index LIMIT {limit}) f").format(
                select=self.select, extra=self.extra, dataset=sql.Literal(dataset_id),
                after=sql.Literal(after), where=where, limit=sql.Literal(limit))

    def _shape(self, name: str, rows: int) -> tuple:
        return (rows, self.slots) if name in self.per_receiver else (rows,)

    def _array(self, name: str, array: bytes | None, rows: int, last: int) -> np.ndarray:
        """The values of one column's binary array, every framing field checked at once."""
        wire, oid = self.wires[name]
        shape = self._shape(name, rows)
        header = np.array([len(shape), 0, oid] + [v for n in shape for v in (n, 1)], ">i4")
        offset = 4 * len(header)
        if (array is None or len(array) != offset + int(np.prod(shape)) * (4 + wire.itemsize)
                or array[:offset] != header.tobytes()):
            raise ExportError(f"unexpected data for column {name.split('__')[0]} in the "
                              f"chunk after sample_index {last}", name.split("__")[0])
        elements = np.frombuffer(array, [("len", ">i4"), ("value", wire)], offset=offset)
        if not (elements["len"] == wire.itemsize).all():
            raise ExportError(f"unexpected element lengths in column {name.split('__')[0]} in "
                              f"the chunk after sample_index {last}", name.split("__")[0])
        return elements["value"].reshape(shape + wire.shape)

    def decode(self, arrays: dict, want: int, start: int, last: int) -> Chunk:
        """One chunk's row of arrays, ``want`` rows expected."""
        index = self._array("sample_index", arrays["sample_index"], want, last)
        if want > 1 and not (np.diff(index) > 0).all():
            raise ExportError(f"the rows after sample_index {last} came out of order")
        values, nulls = {}, {}
        for c in self.columns:
            v = self._array(c.name, arrays[c.name], want, last)
            if c.pg_type == "uuid":
                values[c.name] = np.ascontiguousarray(v)
                nulls[c.name] = self._array(f"{c.name}__isnull", arrays[f"{c.name}__isnull"],
                                            want, last).view(bool).copy()
            elif c.pg_type == "timestamptz":
                values[c.name] = (v.astype(np.int64) + PG_EPOCH_US).astype(c.dtype)
            else:
                values[c.name] = v.astype(c.dtype)
        return Chunk(start, want, values, nulls)
