"""Export a dataset for training: Parquet or NPZ, in bounded memory, from one snapshot.

The rows come from ``export.reader.Snapshot`` (one REPEATABLE READ snapshot, chunks
of ``CHUNK_ROWS`` decoded with NumPy). Per-receiver columns are N x R with padding (-1, NaN,
false); UUIDs are UUIDs in Parquet and 36-character text in NPZ ('' for NULL); created_at is
microseconds, UTC. Every file carries the dataset's id, name, configuration and the export
time (``Snapshot.metadata``).

* Parquet (``parquet_steps``): one row group per chunk, zstd, per-receiver columns
  ``fixed_size_list<R>``; the metadata as JSON under the schema metadata key ``heimdall``.
* NPZ (``NpzSpool``): one ``.npy`` per column written chunk by chunk in a work folder (the
  header first: N and R are known), then zipped (stored, not compressed) 1 MiB at a time with
  a ``metadata.json`` entry: plain ``numpy.load`` reads it, no pickle.

At most two chunks exist at any time, whatever N is. ``export_file`` is what the CLI calls;
the HTTP view streams the same writers through ``stream``. pyarrow is imported only when a
Parquet file is written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import unicodedata
import zipfile
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from heimdall_synth.kernel.config import ConfigError

from heimdall_synth.service.export.columns import Chunk, Column, ExportError
from heimdall_synth.service.export.reader import CHUNK_ROWS, Snapshot
from heimdall_synth.service.engine.request import ConflictError

__all__ = ["CHUNK_ROWS", "DEFAULT_FORMAT", "ExportError", "FORMATS", "Format", "NpzSpool",
           "Snapshot", "check_format", "content_disposition", "export_file", "file_name",
           "parquet_steps", "stream"]

_PIECE = 1 << 20  # bytes per write when zipping


@dataclass(frozen=True)
class Format:
    name: str
    suffix: str
    media_type: str


FORMATS = {
    "parquet": Format("parquet", ".parquet", "application/vnd.apache.parquet"),
    "npz": Format("npz", ".npz", "application/zip"),
}
DEFAULT_FORMAT = "parquet"


def check_format(value) -> Format:
    """The format named ``value``; ConfigError naming ``format`` otherwise."""
    if value not in FORMATS:
        raise ConfigError("format", f"must be one of {', '.join(FORMATS)}, got {value!r}")
    return FORMATS[value]


# ----------------------------------------------------------------------------- Parquet

def arrow_schema(snapshot: Snapshot):
    """The Parquet schema: one field per column, per-receiver columns fixed_size_list<R>."""
    import pyarrow as pa
    scalar = {"int2": pa.int16(), "int4": pa.int32(), "int8": pa.int64(),
              "float4": pa.float32(), "float8": pa.float64(), "bool": pa.bool_(),
              "uuid": pa.uuid(), "timestamptz": pa.timestamp("us", tz="UTC")}
    fields = []
    for c in snapshot.columns:
        if c.per_receiver:
            item = pa.field("item", scalar[c.pg_type], nullable=False)
            fields.append(pa.field(c.name, pa.list_(item, snapshot.slots), nullable=False))
        else:
            fields.append(pa.field(c.name, scalar[c.pg_type], nullable=c.pg_type == "uuid"))
    meta = snapshot.metadata("parquet", {f.name: str(f.type) for f in fields})
    meta = json.dumps(meta, default=str, sort_keys=True)
    return pa.schema(fields, metadata={"heimdall": meta})


def _record_batch(chunk: Chunk, schema):
    import pyarrow as pa
    arrays = []
    for field in schema:
        values = chunk.values[field.name]
        if isinstance(field.type, pa.FixedSizeListType):
            flat = pa.array(values.reshape(-1), type=field.type.value_type)
            arrays.append(pa.FixedSizeListArray.from_arrays(flat, type=field.type))
        elif isinstance(field.type, pa.BaseExtensionType):  # uuid: 16 bytes, NULLs masked
            nulls = chunk.nulls[field.name]
            validity = pa.array(~nulls).buffers()[1] if nulls.any() else None
            storage = pa.FixedSizeBinaryArray.from_buffers(
                pa.binary(16), chunk.rows, [validity, pa.py_buffer(values)])
            arrays.append(pa.ExtensionArray.from_storage(field.type, storage))
        else:
            arrays.append(pa.array(values, type=field.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def parquet_steps(snapshot: Snapshot, out, chunk_rows: int | None = None) -> Iterator[int]:
    """Write the Parquet file to ``out`` (a binary file object), one row group per chunk;
    yields the rows written after each. The footer is written when the generator ends."""
    import pyarrow.parquet as pq
    schema = arrow_schema(snapshot)
    with pq.ParquetWriter(out, schema, compression="zstd", use_dictionary=False,
                          write_statistics=["sample_index"]) as writer, \
            closing(snapshot.chunks(chunk_rows)) as chunks:
        for chunk in chunks:
            writer.write_batch(_record_batch(chunk, schema), row_group_size=chunk.rows)
            yield chunk.start + chunk.rows


# ----------------------------------------------------------------------------- NPZ

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_UUID_DIGITS = np.array([i for i in range(36) if i not in (8, 13, 18, 23)])


def uuid_text(raw: np.ndarray, nulls: np.ndarray) -> np.ndarray:
    """(n, 16) UUID bytes -> (n,) 36-character text ('' where NULL), vectorised."""
    n = len(raw)
    digits = np.empty((n, 32), np.uint8)
    digits[:, 0::2], digits[:, 1::2] = raw >> 4, raw & 15
    text = np.full((n, 36), ord("-"), np.uint8)
    text[:, _UUID_DIGITS] = _HEX[digits]
    text[nulls] = 0
    return text.view("S36").reshape(n).astype("U36")


def _npz_values(column: Column, chunk: Chunk) -> np.ndarray:
    values = chunk.values[column.name]
    if column.pg_type == "uuid":
        return uuid_text(values, chunk.nulls[column.name])
    return values


class NpzSpool:
    """The NPZ export in two steps: ``fill()`` writes one .npy column file per column (the
    header first: N and R are known), chunk by chunk; ``zip_steps(out)`` then zips them
    (stored) into ``out``, 1 MiB at a time, closing each once zipped, and adds
    ``metadata.json``. The snapshot is not needed after ``fill()``.

    The column files are anonymous temporary files in ``folder`` (``tempfile.TemporaryFile``:
    unlinked at once, O_TMPFILE where the file system has it): they hold disk space only while
    open, and a killed process leaves nothing behind."""

    def __init__(self, snapshot: Snapshot, folder=None):
        self.snapshot, self.folder = snapshot, folder
        self.metadata = snapshot.metadata("npz", {c.name: c.dtype.str for c in snapshot.columns})
        self.columns = snapshot.columns
        self.zip_time = snapshot.exported_at.astimezone(timezone.utc).timetuple()[:6]
        self.files: dict = {}
        self.filled = False

    def fill(self, chunk_rows: int | None = None) -> Iterator[int]:
        """Yields the rows written after each chunk."""
        n, r = self.snapshot.rows, self.snapshot.slots
        try:
            for c in self.columns:
                self.files[c.name] = f = tempfile.TemporaryFile(dir=self.folder)
                np.lib.format.write_array_header_1_0(f, {
                    "descr": np.lib.format.dtype_to_descr(c.dtype), "fortran_order": False,
                    "shape": (n, r) if c.per_receiver else (n,)})
            with closing(self.snapshot.chunks(chunk_rows)) as chunks:
                for chunk in chunks:
                    for c in self.columns:
                        _npz_values(c, chunk).tofile(self.files[c.name])
                    yield chunk.start + chunk.rows
        except BaseException:
            self.close()
            raise
        self.filled = True

    def zip_steps(self, out) -> Iterator[int]:
        """Write the zip to ``out`` (a binary file object, seekable or not); yields the bytes
        of .npy data zipped so far."""
        if not self.filled:
            raise RuntimeError("fill() the spool first")
        done = 0
        try:
            with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
                for c in self.columns:
                    src = self.files[c.name]
                    src.flush()
                    info = zipfile.ZipInfo(f"{c.name}.npy", date_time=self.zip_time)
                    info.file_size = os.fstat(src.fileno()).st_size  # > 2 GiB: a ZIP64 entry
                    src.seek(0)
                    with archive.open(info, "w") as dst:
                        while piece := src.read(_PIECE):
                            dst.write(piece)
                            done += len(piece)
                            yield done
                    self.files.pop(c.name).close()  # its disk space is freed now
                info = zipfile.ZipInfo("metadata.json", date_time=self.zip_time)
                archive.writestr(info, json.dumps(self.metadata, default=str, indent=1,
                                                  sort_keys=True))
            yield done
        finally:
            self.close()

    @property
    def npy_bytes(self) -> int:
        """The total size of the column files (what zip_steps counts to)."""
        for f in self.files.values():
            f.flush()
        return sum(os.fstat(f.fileno()).st_size for f in self.files.values())

    def close(self) -> None:
        for f in self.files.values():
            f.close()
        self.files.clear()


# ----------------------------------------------------------------------------- outputs

class StreamBuffer:
    """A write-only binary file whose contents a streaming response takes out (``take()``)
    between steps of a writer; never holds more than one step's output."""

    def __init__(self):
        self._parts, self._written = [], 0
        self.closed = False

    def write(self, data) -> int:
        data = bytes(data)
        self._parts.append(data)
        self._written += len(data)
        return len(data)

    def tell(self) -> int:
        return self._written

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def writable(self) -> bool:
        return True

    def take(self) -> bytes:
        data, self._parts = b"".join(self._parts), []
        return data


def stream(steps: Callable[[StreamBuffer], Iterator], on_close: Callable[[], None] = None
           ) -> Iterator[bytes]:
    """The bytes a writer (``parquet_steps`` or ``NpzSpool.zip_steps``, given a
    StreamBuffer) produces, handed out after each of its steps; ``on_close`` runs at the end,
    also when the consumer stops early."""
    buffer = StreamBuffer()
    writer = steps(buffer)
    try:
        for _ in writer:
            data = buffer.take()
            if data:
                yield data
        data = buffer.take()
        if data:
            yield data
    finally:
        writer.close()  # first: it stops its reader thread, which uses the snapshot
        if on_close is not None:
            on_close()


def file_name(name: str, fmt: Format) -> str:
    """A file name made from a dataset name: letters and digits of any script, '.', '-', '_'
    and spaces are kept, anything else (path separators, control characters) becomes '_';
    never hidden, never empty."""
    base = re.sub(r"[^\w.\- ]", "_", name).strip(" .") or "dataset"
    return base + fmt.suffix


def content_disposition(name: str, fmt: Format) -> str:
    """``attachment`` with an ASCII ``filename`` and the exact UTF-8 ``filename*`` (RFC 6266)."""
    from urllib.parse import quote
    full = file_name(name, fmt)
    base = unicodedata.normalize("NFKD", full[:-len(fmt.suffix)]).encode("ascii", "ignore")
    base = re.sub(r"[^A-Za-z0-9._ -]", "_", base.decode()).strip(". ") or "dataset"
    return (f"attachment; filename=\"{base}{fmt.suffix}\"; "
            f"filename*=UTF-8''{quote(full, safe='')}")


def export_file(url: str, ref: str, fmt: Format, path=None, *, force: bool = False,
                chunk_rows: int | None = None,
                on_progress: Callable[[str, int, int], None] | None = None,
                split: str | None = None) -> dict:
    """Export dataset ``ref`` (id or name) to ``path`` (default ``<name><suffix>`` in the
    current folder). Refuses an existing file unless ``force``. The file appears only when
    complete (``_unnamed_output``); the NPZ's column files are anonymous temporary files
    beside it (nothing of them survives a kill). ``on_progress(phase, done,
    total)``: phase "rows" (rows read), then for NPZ "zip" (bytes zipped)."""
    import time
    t0 = time.perf_counter()
    progress = on_progress or (lambda *a: None)
    with Snapshot(url, ref, split=split) as snapshot:
        stem = snapshot.name if split is None else f"{snapshot.name}-{split}"
        path = Path(path) if path is not None else Path.cwd() / file_name(stem, fmt)
        if path.is_dir():
            raise ConfigError("out", f"{path} is a folder; give a file name")
        if path.exists() and not force:
            raise ConflictError(f"{path} exists; pass --force to overwrite it", ["out"],
                                code="file_exists")
        if not path.parent.is_dir():
            raise ConfigError("out", f"folder {path.parent} does not exist")
        with _unnamed_output(path, force) as out:
            progress("rows", 0, snapshot.rows)
            if fmt.name == "parquet":
                with closing(parquet_steps(snapshot, out, chunk_rows)) as steps:
                    for done in steps:
                        progress("rows", done, snapshot.rows)
            else:
                spool = NpzSpool(snapshot, path.parent)
                with closing(spool.fill(chunk_rows)) as steps:
                    for done in steps:
                        progress("rows", done, snapshot.rows)
                snapshot.close()  # the rows are read: end the transaction
                total = spool.npy_bytes
                for done in spool.zip_steps(out):
                    progress("zip", done, total)
        return {"path": str(path), "format": fmt.name, "dataset_id": str(snapshot.dataset_id),
                "name": snapshot.name, "split": split or "all", "rows": snapshot.rows,
                "receiver_slots": snapshot.slots,
                "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - t0, 3),
                "exported_at": snapshot.exported_at.isoformat()}


@contextmanager
def _unnamed_output(path: Path, force: bool):
    """A file for the export that takes its name ``path`` only when complete: written as a
    hidden ``.<name>.<pid>.partial`` beside it and moved into place at the end; removed when
    the export fails, and, after a kill, by the next export into the same folder (its process
    is gone)."""
    folder = path.parent
    _remove_stale_partials(folder)
    partial = folder / f".{path.name}.{os.getpid()}.partial"
    try:
        with open(partial, "wb") as out:
            yield out
        _place(partial, path, force)
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale_partials(folder: Path) -> None:
    """Remove ``.<name>.<pid>.partial`` files whose process is gone (a killed export)."""
    for stale in folder.glob(".*.partial"):
        try:
            pid = int(stale.name.rsplit(".", 2)[-2])
            os.kill(pid, 0)
        except (ValueError, IndexError):
            continue
        except ProcessLookupError:
            stale.unlink(missing_ok=True)
        except PermissionError:
            continue


def _place(partial: Path, path: Path, force: bool) -> None:
    """Move the finished file into place; without ``force`` never over a file that appeared
    meanwhile (a hard link fails if the name exists)."""
    if force:
        os.replace(partial, path)
        return
    try:
        os.link(partial, path)
    except FileExistsError:
        raise ConflictError(f"{path} appeared during the export; pass --force to overwrite "
                            "it", ["out"], code="file_exists") from None
    except OSError:  # no hard links here (some file systems): check, then rename
        if path.exists():
            raise ConflictError(f"{path} exists; pass --force to overwrite it", ["out"],
                                code="file_exists") from None
        os.replace(partial, path)
        return
    partial.unlink()
