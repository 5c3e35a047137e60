"""Read a dataset in bounded chunks from one snapshot, decoded with NumPy (for the export).

``Snapshot`` opens its own connection in a REPEATABLE READ, READ ONLY transaction. Its first
statement finds the dataset, so the dataset row, the row count N, the receiver slots R (the
longest per-receiver array) and every chunk come from ONE snapshot: rows an expansion commits
meanwhile are not read, and N is exact before the first row is read. Chunks are keyset-paged
on sample_index (the unique (dataset_id, sample_index) index), and each chunk is ONE result row:
per column ``array_agg(column ORDER BY sample_index)`` over the chunk's rows, fetched in binary
as raw bytes. Every per-receiver array arrives with R slots (the server pads shorter ones), so
a per-receiver column is one 2-D (rows x R) array. Each array's header and every element's
length field are checked at once with NumPy and its values are a strided big-endian view:
there is no Python per row (nor per element). A NULL value or element (the array's has-NULL
flag) or a ragged row (array_agg refuses it; a savepoint per chunk keeps the snapshot) is an
``ExportError`` naming the column and the sample_index, found by asking the server about that
chunk's rows (error path only), never misread bytes. A thread reads chunk k + 1 from the
server while the consumer decodes and writes chunk k.

Columns are those of heimdall.measurement_features (read from the catalog, in table order)
except dataset_id. Per-receiver columns are N x R; slots beyond a sample's receivers are
padding: -1 for integers (rx_id), NaN for floats, false for booleans (signal_present).
"""

from __future__ import annotations

from contextlib import closing
from typing import Iterator

import psycopg
from psycopg import sql

from heimdall_synth.kernel.config import check_split
from heimdall_synth.kernel.defaults import SPLITS
from heimdall_synth.service.engine.request import NotFoundError
from heimdall_synth.service.export.columns import (ARRAY_OIDS, Chunk, ExportError, Layout,
                                                   RawArray, table_columns)
from heimdall_synth.service.storage.database import connect

CHUNK_ROWS = 16_384


# ----------------------------------------------------------------------------- the snapshot

class Snapshot:
    """One dataset, read from one REPEATABLE READ snapshot on a connection of its own.

    ``ref`` is a dataset id, or with ``by_name`` also a name. NotFoundError names ``field``.
    ``columns`` (names, or a function of the dataset row giving them) reads only those
    columns and sample_index (default: all).
    ``rows`` (N) and ``slots`` (R) are known on return; ``chunks()`` reads the rows. Close it
    (or use it as a context manager): it holds a transaction open.
    """

    def __init__(self, url: str, ref: str, field: str = "dataset", by_name: bool = True,
                 split: str | None = None, columns=None):
        self.split_name = check_split(split)
        self.split = None if split is None else SPLITS.index(split)
        only = "" if self.split is None else f" AND split = {self.split}"
        self.conn = connect(url)
        try:
            self.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            self.conn.read_only = True
            self.dataset, self.exported_at = _find_dataset(self.conn, ref, field, by_name)
            self.dataset_id = self.dataset["id"]
            self.columns = table_columns(self.conn, self.dataset["dataset_type"])
            if callable(columns):
                columns = tuple(columns(self.dataset))
            if columns is not None:  # a reader of some columns (sample_index always)
                unknown = set(columns) - {c.name for c in self.columns}
                if unknown:
                    raise ValueError(f"no column {sorted(unknown)[0]!r} to read")
                self.columns = [c for c in self.columns
                                if c.name in columns or c.name == "sample_index"]
            receivers = sql.Identifier(next(c.name for c in self.columns if c.per_receiver))
            self.rows, fewest, most = self.conn.execute(sql.SQL(
                "SELECT count(*), min(cardinality({0})), max(cardinality({0})) "
                "FROM heimdall.measurement_features WHERE dataset_id = %s" + only).format(
                    receivers),
                (self.dataset_id,)).fetchone()
            self.slots = int(most or 0)
            if self.rows and not self.slots:
                raise ExportError("the dataset's rows have no receivers", "rx_id")
            self._layout = Layout(self.columns, self.slots, padded=fewest != most)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if not self.conn.closed:
            self.conn.close()  # rolls the read-only transaction back

    def __enter__(self) -> "Snapshot":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def name(self) -> str:
        return self.dataset["name"]

    def metadata(self, fmt: str, types: dict) -> dict:
        """What an export file of format ``fmt`` says about itself; ``types``: column -> its
        type in the file."""
        d = self.dataset
        return {
            "format": f"heimdall-synth export ({fmt})", "version": 1,
            "dataset_id": str(d["id"]), "name": d["name"], "description": d["description"],
            "dataset_type": d["dataset_type"], "seed": d["seed"], "config": d["config"],
            "quality_metrics": d["quality_metrics"],
            "created_at": d["created_at"].isoformat(),
            "exported_at": self.exported_at.isoformat(),
            "num_samples": self.rows, "receiver_slots": self.slots,
            "split": self.split_name or "all",
            "order": "sample_index ascending",
            "padding": "per-receiver slots beyond num_receivers_in_sample: -1 for integers, "
                       "NaN for floats, false for booleans",
            "columns": [{"name": c.name, "pg_type": c.pg_type + ("[]" * c.per_receiver),
                         "type": types[c.name],
                         "shape": [self.rows, self.slots] if c.per_receiver else [self.rows]}
                        for c in self.columns],
        }

    def chunks(self, chunk_rows: int | None = None, ahead: bool = True) -> Iterator[Chunk]:
        """The rows in sample_index order, at most ``chunk_rows`` (default ``CHUNK_ROWS``) at
        a time, each chunk's arrays its own. With ``ahead`` a thread reads the next chunk's
        bytes from the server while the caller decodes and writes this one; at most two
        chunks' bytes and one decoded chunk exist at once."""
        chunk_rows = chunk_rows or CHUNK_ROWS
        if chunk_rows < 1:
            raise ValueError("chunk_rows must be at least 1")
        raw = self._read_raw(chunk_rows)
        return self._decoded(_one_ahead(raw) if ahead else raw)

    def _decoded(self, raw_chunks: Iterator) -> Iterator[Chunk]:
        with closing(raw_chunks):
            for raw in raw_chunks:
                yield self._layout.decode(*raw)

    def _read_raw(self, chunk_rows: int) -> Iterator[tuple]:
        """Each chunk as (column -> its PostgreSQL binary array, rows, first row, sample_index
        before it): ONE result row per chunk. A chunk holding a NULL (the has-NULL flag of an
        array) or a ragged array (array_agg refuses it; a savepoint keeps the snapshot usable)
        is refused here, naming the column and the row."""
        layout, done, last = self._layout, 0, -2**63
        while done < self.rows:
            want = min(chunk_rows, self.rows - done)
            try:
                with self.conn.transaction(), self.conn.cursor(binary=True) as cur:
                    for oid in ARRAY_OIDS:
                        cur.adapters.register_loader(oid, RawArray)
                    cur.execute(layout.statement(self.dataset_id, last, want, self.split))
                    arrays = dict(zip(layout.names, cur.fetchone()))
            except psycopg.Error as exc:  # rolled back to the savepoint: same snapshot
                raise self._bad_row_error(last, want) from exc
            if any(arrays[name] and arrays[name][4:8] != bytes(4) for name in layout.names):
                raise self._bad_row_error(last, want)
            yield arrays, want, done, last
            index = arrays["sample_index"]
            if not index or len(index) < 8:
                return  # the decoder names what is wrong with this chunk
            last = int.from_bytes(index[-8:], "big", signed=True)
            done += want

    def _bad_row_error(self, last: int, want: int) -> ExportError:
        """The error naming the first row of the chunk after sample_index ``last`` that the
        export cannot represent, and its first such column in table order (error path only:
        the server checks the chunk's rows one by one)."""
        receivers = sql.Identifier(next(c.name for c in self.columns if c.per_receiver))
        checks = []  # per column: is NULL; has NULL elements; is ragged (per receiver)
        for c in self.columns:
            ident = sql.Identifier(c.name)
            checks.append(sql.SQL("{} IS NULL").format(ident) if c.pg_type != "uuid"
                          else sql.SQL("false"))
            if c.per_receiver:
                checks.append(sql.SQL("coalesce(CASE WHEN array_ndims({0}) = 1 THEN "
                                      "array_position({0}, NULL) IS NOT NULL END, false)")
                              .format(ident))
                checks.append(sql.SQL("array_ndims({0}) IS DISTINCT FROM 1 OR cardinality({0})"
                                      " IS DISTINCT FROM cardinality({1})").format(
                                          ident, receivers))
        row = self.conn.execute(sql.SQL(
            "SELECT * FROM (SELECT sample_index, ARRAY[{checks}] AS bad FROM "
            "heimdall.measurement_features WHERE dataset_id = %s AND sample_index > %s "
            "AND split = coalesce(%s, split) ORDER BY sample_index LIMIT %s) f "
            "WHERE true = ANY(bad) ORDER BY sample_index LIMIT 1")
            .format(checks=sql.SQL(", ").join(checks)),
            (self.dataset_id, last, self.split, want)).fetchone()
        if row is None:
            return ExportError(f"the rows after sample_index {last} could not be read as "
                               "arrays")
        where = f"the row with sample_index {row[0]}"
        bad = iter(row[1])
        for c in self.columns:
            is_null = next(bad)
            holes, ragged = (next(bad), next(bad)) if c.per_receiver else (False, False)
            if is_null:
                return ExportError(f"column {c.name} is NULL in {where}; the export cannot "
                                   "represent it", c.name)
            if holes:
                return ExportError(f"column {c.name} has NULL elements in {where}", c.name)
            if ragged:
                return ExportError(f"column {c.name} has another number of receivers than "
                                   f"rx_id in {where}", c.name)
        raise AssertionError("unreachable: a bad row names a column")


def _one_ahead(source: Iterator) -> Iterator:
    """``source``'s items, produced by a thread one item ahead of the consumer: the thread
    makes item k + 1 while the consumer works on item k, then waits until the consumer takes
    it. Its exceptions are raised in the consumer. When the consumer stops early, the thread
    finishes the item it is making, closes ``source`` and ends before this generator returns
    (so the source's connection is free again)."""
    import queue
    import threading
    handoff: queue.Queue = queue.Queue(maxsize=1)
    taken, stop = threading.Semaphore(0), threading.Event()
    end = object()

    def offer(item) -> bool:
        handoff.put(item)
        while not taken.acquire(timeout=0.1):  # until the consumer has it
            if stop.is_set():
                return False
        return not stop.is_set()

    def run():
        try:
            for item in source:
                if not offer((item, None)):
                    return
            offer((end, None))
        except BaseException as exc:  # noqa: BLE001 - raised again in the consumer
            offer((None, exc))
        finally:
            source.close()

    thread = threading.Thread(target=run, name="heimdall-export-reader", daemon=True)
    thread.start()
    try:
        while True:
            item, error = handoff.get()
            taken.release()
            if error is not None:
                raise error
            if item is end:
                return
            yield item
            del item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                handoff.get_nowait()
            except queue.Empty:
                pass
            thread.join(0.05)


def _find_dataset(conn, ref: str, field: str, by_name: bool):
    """The dataset row (by id, else by name) and the transaction's start time. It is the
    transaction's first statement: the snapshot is taken here."""
    import uuid
    try:
        dataset_id = str(uuid.UUID(str(ref)))
    except ValueError:
        dataset_id = None
    cur = conn.execute(
        "SELECT now(), id, name, description, dataset_type, seed, config, quality_metrics, "
        "created_at FROM heimdall.synthetic_datasets WHERE id = %(id)s::uuid "
        + ("OR name = %(name)s ORDER BY id = %(id)s::uuid DESC NULLS LAST " if by_name else "")
        + "LIMIT 1", {"id": dataset_id, "name": str(ref)})
    row = cur.fetchone()
    if row is None:
        what = "id or name" if by_name else "id"
        raise NotFoundError(f"no dataset with {what} {ref!r}", field=field)
    names = [c.name for c in cur.description][1:]
    return dict(zip(names, row[1:])), row[0]
