"""PyTorch map-style datasets over a heimdall-synth dataset (the ``torch`` extra): read from
PostgreSQL (``SampleDataset``) or from a Parquet export (``ParquetSampleDataset``).

    from torch.utils.data import DataLoader
    from heimdall_synth.service.training.torch_data import SampleDataset

    data = SampleDataset(database_url, "demo", split="train")
    loader = DataLoader(data, batch_size=256, shuffle=True, num_workers=4,
                        multiprocessing_context="spawn")

Item k is sample number k of the chosen split in sample_index order, read when asked: a pure
function of k (no per-worker random state), so any sampler, shuffling and any number of
workers give each sample exactly once per epoch. From PostgreSQL, memory holds the split's
sample indices (8 bytes a sample, read with one binary COPY) and the batch being read; each
process opens its own connection on first use (connections do not survive pickling into a
worker). From Parquet, memory holds the split's row numbers and at most ``CACHED_GROUPS`` row
groups of the columns read; ``RowGroupShuffle`` shuffles so that a batch touches one or two
row groups. Use ``spawn`` workers: a process that has run a Numba parallel kernel must not
fork.

An item is a dict of tensors, receivers padded to the dataset's receiver slots:

* ``features`` float32 (slots, F): ``FEATURES`` per receiver (for iq_raw also the means over
  windows of the features measured from the IQ), 0 where a receiver does not detect or is
  padding;
* ``detected`` bool (slots): the receiver detects the transmitter; ``present`` bool (slots):
  the slot holds a receiver;
* ``receivers`` float32 (slots, 3): each receiver's latitude, longitude (degrees) and altitude
  (m);
* ``target`` float64 (2,): the transmitter's latitude and longitude (degrees): the label;
* ``sample_index`` int64;
* with ``iq=True`` (iq_raw): ``iq`` float32 (slots, 2, IQ samples), I and Q of each receiver's
  capture in sqrt(mW), the same values the IQ route serves (regenerated or stored).
"""

from __future__ import annotations

import os

import numpy as np

from heimdall_synth.kernel.config import GenerationConfig, check_split
from heimdall_synth.kernel.defaults import IQ_FEATURES, SPLITS

#: Per-receiver measurements fed to a model. distance_km is left out: it is computed from the
#: label (the transmitter's position) and would leak it.
FEATURES = ("rssi_dbm", "snr_db", "rssi_std_db", "rssi_min_dbm", "rssi_max_dbm",
            "noise_floor_dbm", "psd_dbm_per_hz", "freq_offset_hz")
IQ_MEAN_FEATURES = tuple(f"iq_{name}_mean" for name in IQ_FEATURES)


def _torch():
    try:
        import torch
    except ImportError:
        raise ImportError("SampleDataset needs PyTorch: pip install 'heimdall-synth[torch]'"
                          ) from None
    return torch


#: A Parquet dataset keeps at most this many decoded row groups (per process).
CACHED_GROUPS = 2
_POSITION_COLUMNS = ("rx_lat", "rx_lon", "rx_alt_m")


def _items(sample_index, target, receivers, present, detected, features, iq=None) -> list[dict]:
    """A batch's items from its arrays (B rows each; per receiver padded to the slots, NaN or
    anything in padding): features zeroed where a receiver does not detect, is padding or has
    no finite value."""
    torch = _torch()
    detected = detected & present
    features = np.where(detected[..., None] & np.isfinite(features), features, 0.0
                        ).astype(np.float32)
    receivers = np.where(present[..., None], receivers, 0.0).astype(np.float32)
    items = []
    for n in range(len(sample_index)):
        item = {"features": torch.from_numpy(features[n]),
                "detected": torch.from_numpy(detected[n].copy()),
                "present": torch.from_numpy(present[n].copy()),
                "receivers": torch.from_numpy(receivers[n]),
                "target": torch.from_numpy(np.asarray(target[n], np.float64).copy()),
                "sample_index": torch.tensor(int(sample_index[n]), dtype=torch.int64)}
        if iq is not None:
            x = iq[n]
            item["iq"] = torch.from_numpy(np.stack([x.real, x.imag], axis=1).astype(np.float32))
        items.append(item)
    return items


def _check_positions(positions, size: int) -> list[int]:
    positions = [int(k) for k in positions]
    for k in positions:
        if not 0 <= k < size:
            raise IndexError(f"sample {k} of a split of {size}")
    return positions


def _feature_columns(dataset_type: str) -> tuple[str, ...]:
    return FEATURES + (IQ_MEAN_FEATURES if dataset_type == "iq_raw" else ())


class SampleDataset:
    """Samples of one dataset (and split) in PostgreSQL as PyTorch tensors; see the module
    docstring."""

    def __init__(self, database_url: str, dataset: str, split: str | None = None,
                 iq: bool = False):
        from heimdall_synth.service.storage.database import connect
        from heimdall_synth.service.storage.datasets import find_dataset
        _torch()
        self.url, self.split, self.iq = database_url, check_split(split), bool(iq)
        with connect(database_url) as conn:
            self.dataset = find_dataset(conn, dataset)
            self.index = _sample_indices(conn, self.dataset["id"], split)
        self.config = GenerationConfig.from_dict(self.dataset["config"])
        if self.iq and not self.config.is_iq:
            raise ValueError(f"dataset {self.dataset['name']!r} is "
                             f"{self.dataset['dataset_type']}: only iq_raw datasets have IQ")
        self.slots = self.config.max_receivers
        self.columns = _feature_columns(self.dataset["dataset_type"])
        self._conn, self._pid = None, None

    def __len__(self) -> int:
        return len(self.index)

    def __getstate__(self):  # for spawned workers: no connection, the config as its dict
        return {**self.__dict__, "_conn": None, "_pid": None, "config": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.config = GenerationConfig.from_dict(self.dataset["config"])

    def _connection(self):
        if self._conn is None or self._pid != os.getpid() or self._conn.closed:
            from heimdall_synth.service.storage.database import connect
            self._conn, self._pid = connect(self.url), os.getpid()
        return self._conn

    def __getitem__(self, k: int) -> dict:
        return self.__getitems__([k])[0]

    def __getitems__(self, positions) -> list[dict]:
        """Items ``positions`` with one query (the DataLoader calls this for a whole batch)."""
        wanted = self.index[_check_positions(positions, len(self.index))]
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                "SELECT sample_index, attempt_index, job_id, tx_latitude, tx_longitude, "
                "rx_lat, rx_lon, rx_alt_m, signal_present, " + ", ".join(self.columns) +
                " FROM heimdall.measurement_features WHERE dataset_id = %s AND "
                "sample_index = ANY(%s)", (self.dataset["id"], wanted.tolist())).fetchall()
        by_index = {r[0]: r for r in rows}
        ordered = [by_index[int(s)] for s in wanted]
        size, slots, width = len(ordered), self.slots, len(self.columns)
        receivers = np.zeros((size, slots, 3))
        present = np.zeros((size, slots), bool)
        detected = np.zeros((size, slots), bool)
        features = np.zeros((size, slots, width))
        for n, row in enumerate(ordered):  # rows of at most `slots` receivers each
            count = len(row[5])
            present[n, :count] = True
            detected[n, :count] = row[8]
            receivers[n, :count] = np.column_stack(row[5:8])
            features[n, :count] = np.array(row[9:], np.float64).T
        iq = self._iq(conn, ordered) if self.iq else None
        return _items(wanted, [(r[3], r[4]) for r in ordered], receivers, present, detected,
                      features, iq)

    def _iq(self, conn, rows) -> np.ndarray:
        """Served IQ of ``rows`` (in their order): (len, slots, capture) complex64."""
        from heimdall_synth.service.engine.signals import rows_iq
        return rows_iq(conn, self.dataset, [r[:3] for r in rows], self.slots, threads=1)


def _sample_indices(conn, dataset_id, split: str | None) -> np.ndarray:
    """The sample indices of a dataset (one split), ascending, as int64: one binary COPY
    decoded by NumPy (no Python object per sample)."""
    where = "" if split is None else f" AND split = {SPLITS.index(split)}"
    data = bytearray()
    with conn.transaction(), conn.cursor().copy(
            "COPY (SELECT sample_index FROM heimdall.measurement_features WHERE dataset_id = "
            f"%s{where} ORDER BY sample_index) TO STDOUT (FORMAT binary)",
            (dataset_id,)) as copy:
        for block in copy:
            data += block
    # 19-byte header, per row int16 field count, int32 length, int64 value; int16 -1 trailer
    body = np.frombuffer(bytes(data[19:-2]), [("fields", ">i2"), ("length", ">i4"),
                                              ("value", ">i8")])
    if not ((body["fields"] == 1).all() and (body["length"] == 8).all()):
        raise ValueError("unexpected COPY data for the sample indices")
    return body["value"].astype(np.int64)


class ParquetSampleDataset:
    """Samples of a Parquet export (``heimdall-synth export``; a whole dataset or one split)
    as PyTorch tensors, the same items as ``SampleDataset``'s (no IQ: the export's Zarr store
    holds it). Item k is the k-th row of the file in the chosen split.

    Memory: the split's row numbers (8 bytes a sample) and at most ``CACHED_GROUPS`` decoded
    row groups of the columns read. A batch reads the row groups its rows are in: shuffle
    with ``RowGroupShuffle`` (as the sampler) so that a batch touches one or two of them.
    """

    def __init__(self, path, split: str | None = None):
        import json

        import pyarrow.parquet as pq
        _torch()
        self.path, self.split = str(path), check_split(split)
        file = pq.ParquetFile(self.path)
        meta = json.loads(file.schema_arrow.metadata[b"heimdall"]) \
            if b"heimdall" in (file.schema_arrow.metadata or {}) else {}
        self.dataset_type = meta.get("dataset_type", "feature_based")
        self.columns = _feature_columns(self.dataset_type)
        sizes = [file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)]
        self.group_starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        splits = file.read(columns=["split"]).column("split").to_numpy()
        keep = np.ones(len(splits), bool) if split is None else splits == SPLITS.index(split)
        self.rows = np.flatnonzero(keep).astype(np.int64)  # file row of each item
        self.slots = file.schema_arrow.field("rx_lat").type.list_size
        self._file, self._cache = None, {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):  # for spawned workers: no open file, no cached groups
        return {**self.__dict__, "_file": None, "_cache": {}}

    def groups(self) -> list[np.ndarray]:
        """The items of each row group (their positions k), in file order."""
        group = np.searchsorted(self.group_starts, self.rows, side="right") - 1
        cuts = np.flatnonzero(np.diff(group)) + 1
        return np.split(np.arange(len(self.rows)), cuts)

    def _group(self, g: int) -> dict:
        """Row group ``g``'s columns as arrays (the latest CACHED_GROUPS kept)."""
        if g not in self._cache:
            import pyarrow.parquet as pq
            if self._file is None:
                self._file = pq.ParquetFile(self.path)
            names = ("sample_index", "tx_latitude", "tx_longitude", "signal_present",
                     "rx_id") + _POSITION_COLUMNS + self.columns
            table = self._file.read_row_group(g, columns=list(names))
            arrays = {}
            for name in names:
                column = table.column(name).combine_chunks()
                if hasattr(column.type, "list_size"):  # per receiver: (rows, slots)
                    values = column.flatten().to_numpy(zero_copy_only=False)
                    arrays[name] = values.reshape(len(column), self.slots)
                else:
                    arrays[name] = column.to_numpy(zero_copy_only=False)
            while len(self._cache) >= CACHED_GROUPS:
                self._cache.pop(next(iter(self._cache)))
            self._cache[g] = arrays
        return self._cache[g]

    def __getitem__(self, k: int) -> dict:
        return self.__getitems__([k])[0]

    def __getitems__(self, positions) -> list[dict]:
        rows = self.rows[_check_positions(positions, len(self.rows))]
        group = np.searchsorted(self.group_starts, rows, side="right") - 1
        parts: dict[str, np.ndarray] = {}
        for g in np.unique(group):  # each row group read once for the batch
            mine = np.flatnonzero(group == g)
            arrays = self._group(int(g))
            local = rows[mine] - self.group_starts[g]
            for name, values in arrays.items():
                if name not in parts:
                    parts[name] = np.empty((len(rows),) + values.shape[1:], values.dtype)
                parts[name][mine] = values[local]
        features = np.stack([parts[c].astype(np.float64) for c in self.columns], axis=2)
        receivers = np.stack([parts[c].astype(np.float64) for c in _POSITION_COLUMNS], axis=2)
        return _items(parts["sample_index"],
                      np.column_stack([parts["tx_latitude"], parts["tx_longitude"]]),
                      receivers, parts["rx_id"] >= 0, parts["signal_present"], features)


class RowGroupShuffle:
    """A sampler for ``ParquetSampleDataset``: each epoch, the row groups in a random order
    and the items within each group shuffled, so that a batch touches one or two row groups
    (while every item still comes exactly once). Epoch e uses seed (seed, e): reproducible."""

    def __init__(self, data: ParquetSampleDataset, seed: int = 0):
        self.groups, self.seed, self.epoch = data.groups(), int(seed), 0

    def __len__(self) -> int:
        return sum(len(g) for g in self.groups)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for g in rng.permutation(len(self.groups)):
            yield from rng.permutation(self.groups[g]).tolist()
