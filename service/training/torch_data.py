"""A PyTorch map-style dataset over a heimdall-synth dataset (the ``torch`` extra).

    from torch.utils.data import DataLoader
    from heimdall_synth.service.training.torch_data import SampleDataset

    data = SampleDataset(database_url, "demo", split="train")
    loader = DataLoader(data, batch_size=256, shuffle=True, num_workers=4,
                        multiprocessing_context="spawn")

Item k is sample number k of the chosen split in sample_index order, read from PostgreSQL when
asked: a pure function of k (no per-worker random state), so any sampler, shuffling and any
number of workers give each sample exactly once per epoch. Memory holds the split's sample
indices (8 bytes a sample) and the batch being read; each process opens its own connection on
first use (connections do not survive pickling into a worker). Use ``spawn`` workers: a process
that has run a Numba parallel kernel must not fork.

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


class SampleDataset:
    """Samples of one dataset (and split) as PyTorch tensors; see the module docstring."""

    def __init__(self, database_url: str, dataset: str, split: str | None = None,
                 iq: bool = False):
        from heimdall_synth.service.storage.database import connect
        from heimdall_synth.service.storage.datasets import find_dataset
        _torch()
        self.url, self.split, self.iq = database_url, check_split(split), bool(iq)
        with connect(database_url) as conn:
            self.dataset = find_dataset(conn, dataset)
            where = "" if split is None else " AND split = %s"
            args = (self.dataset["id"],) + (() if split is None else (SPLITS.index(split),))
            with conn.transaction():
                self.index = np.array([r[0] for r in conn.execute(
                    "SELECT sample_index FROM heimdall.measurement_features WHERE "
                    f"dataset_id = %s{where} ORDER BY sample_index", args)], np.int64)
        self.config = GenerationConfig.from_dict(self.dataset["config"])
        if self.iq and not self.config.is_iq:
            raise ValueError(f"dataset {self.dataset['name']!r} is "
                             f"{self.dataset['dataset_type']}: only iq_raw datasets have IQ")
        self.slots = self.config.max_receivers
        self.columns = FEATURES + (IQ_MEAN_FEATURES if self.config.is_iq else ())
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
        torch = _torch()
        positions = [int(k) for k in positions]
        for k in positions:
            if not 0 <= k < len(self.index):
                raise IndexError(f"sample {k} of a split of {len(self.index)}")
        wanted = self.index[positions]
        conn = self._connection()
        with conn.transaction():
            rows = conn.execute(
                "SELECT sample_index, attempt_index, job_id, tx_latitude, tx_longitude, "
                "rx_lat, rx_lon, rx_alt_m, signal_present, " + ", ".join(self.columns) +
                " FROM heimdall.measurement_features WHERE dataset_id = %s AND "
                "sample_index = ANY(%s)", (self.dataset["id"], wanted.tolist())).fetchall()
        by_index = {r[0]: r for r in rows}
        iq = self._iq(conn, [by_index[int(s)] for s in wanted]) if self.iq else None
        items = []
        for n, sample in enumerate(wanted):
            row = by_index[int(sample)]
            count = len(row[5])
            features = np.zeros((self.slots, len(self.columns)), np.float32)
            values = np.array(row[9:], np.float64).T  # (receivers, F)
            detected = np.zeros(self.slots, bool)
            detected[:count] = row[8]
            features[:count] = np.where(detected[:count, None] & np.isfinite(values), values, 0)
            receivers = np.zeros((self.slots, 3), np.float32)
            receivers[:count] = np.column_stack([row[5], row[6], row[7]])
            item = {"features": torch.from_numpy(features),
                    "detected": torch.from_numpy(detected),
                    "present": torch.from_numpy(np.arange(self.slots) < count),
                    "receivers": torch.from_numpy(receivers),
                    "target": torch.tensor([row[3], row[4]], dtype=torch.float64),
                    "sample_index": torch.tensor(int(sample), dtype=torch.int64)}
            if iq is not None:
                x = iq[n]
                item["iq"] = torch.from_numpy(np.stack([x.real, x.imag], axis=1)
                                              .astype(np.float32))
            items.append(item)
        return items

    def _iq(self, conn, rows) -> np.ndarray:
        """Served IQ of ``rows`` (in their order): (len, slots, capture) complex64."""
        from heimdall_synth.service.engine.signals import rows_iq
        return rows_iq(conn, self.dataset, [r[:3] for r in rows], self.slots, threads=1)
