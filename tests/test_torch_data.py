"""The PyTorch dataset: every index exactly once per epoch through a DataLoader with four
(spawned) workers and shuffling, items equal to the stored rows, the split filter, and iq_raw
items whose IQ is byte for byte what the dataset serves."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from heimdall_synth.service.engine.signals import sample_signal
from heimdall_synth.service.training.torch_data import FEATURES, SampleDataset
from tests.helpers import generate, rows

#: PyTorch suggests at most as many workers as cores (2 here); four are what the promise is about.
pytestmark = pytest.mark.filterwarnings(
    "ignore:This DataLoader will create 4 worker processes:UserWarning")


def test_four_workers_give_every_sample_once_per_epoch(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "loader", 100_000, seed=8)
    data = SampleDataset(db_url, "loader")
    assert len(data) == 100_000
    loader = DataLoader(data, batch_size=2000, shuffle=True, num_workers=4,
                        multiprocessing_context="spawn",
                        generator=torch.Generator().manual_seed(1))
    seen = torch.cat([batch["sample_index"] for batch in loader])
    assert len(seen) == 100_000
    assert torch.equal(torch.sort(seen).values, torch.arange(100_000))
    assert not torch.equal(seen[:100], torch.arange(100))  # it really shuffled


def test_items_are_the_stored_rows(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "items", 300, seed=9, use_random_receivers=True,
                             split_cell_m=3000.0)
    stored = rows(conn, dataset_id, "sample_index, tx_latitude, tx_longitude, rx_lat, "
                  "signal_present, rssi_dbm, split")
    data = SampleDataset(db_url, "items")
    for k in (0, 17, 299):
        item, row = data[k], stored[k]
        count = len(row[3])
        assert int(item["sample_index"]) == row[0]
        assert item["target"].tolist() == [row[1], row[2]]
        assert item["present"].sum() == count and item["detected"][:count].tolist() == row[4]
        assert np.allclose(item["receivers"][:count, 0].numpy(), row[3], atol=1e-4)
        rssi = item["features"][:count, FEATURES.index("rssi_dbm")].numpy()
        want = np.where(row[4], np.array(row[5], np.float64), 0.0)
        assert np.allclose(rssi, want, atol=1e-4)
        assert not item["features"][count:].any()  # padding slots are zeros
    test = SampleDataset(db_url, "items", split="test")
    assert [int(test[k]["sample_index"]) for k in range(len(test))] == [
        r[0] for r in stored if r[6] == 2]


def test_iq_raw_items_carry_the_served_iq(conn, db_url):
    dataset_id, _ = generate(conn, db_url, "iq-items", 12, seed=3, dataset_type="iq_raw",
                             iq_sample_rate_hz=25_000, iq_duration_ms=20)
    data = SampleDataset(db_url, "iq-items", iq=True)
    batch = next(iter(DataLoader(data, batch_size=12, num_workers=0)))
    assert batch["iq"].shape == (12, 7, 2, 500)
    for k in (0, 5, 11):
        served = sample_signal(conn, dataset_id, k).iq
        got = batch["iq"][k, :served.shape[0]].numpy()
        assert np.array_equal(got[:, 0] + 1j * got[:, 1], served)


def test_parquet_export_gives_the_same_items(conn, db_url, tmp_path):
    from heimdall_synth.service.export.writers import check_format, export_file
    from heimdall_synth.service.training.torch_data import (ParquetSampleDataset,
                                                            RowGroupShuffle)
    generate(conn, db_url, "pq", 5000, seed=10, use_random_receivers=True,
             split_cell_m=3000.0)
    path = tmp_path / "pq.parquet"
    export_file(db_url, "pq", check_format("parquet"), path, chunk_rows=1000)
    for split in (None, "validation"):
        from_db = SampleDataset(db_url, "pq", split=split)
        from_file = ParquetSampleDataset(path, split=split)
        assert len(from_file) == len(from_db)
        picks = [0, 3, len(from_db) - 1, len(from_db) // 2]
        for got, want in zip(from_file.__getitems__(picks), from_db.__getitems__(picks)):
            assert got.keys() == want.keys()
            for key in want:
                assert got[key].dtype == want[key].dtype, key
                assert torch.equal(got[key], want[key]), key
    data = ParquetSampleDataset(path, split="train")
    sampler = RowGroupShuffle(data, seed=3)
    loader = DataLoader(data, batch_size=200, sampler=sampler, num_workers=2,
                        multiprocessing_context="spawn")
    epochs = [torch.cat([b["sample_index"] for b in loader]) for _ in range(2)]
    want = torch.from_numpy(SampleDataset(db_url, "pq", split="train").index)
    for seen in epochs:
        assert torch.equal(torch.sort(seen).values, want)  # each item once per epoch
    assert not torch.equal(epochs[0], epochs[1])  # a new order each epoch
    # a batch of the row-group shuffle reads at most two row groups (1000 rows each)
    for batch in torch.split(epochs[0], 200):
        assert len(torch.unique(torch.div(batch, 1000, rounding_mode="floor"))) <= 2
