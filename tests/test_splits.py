"""Train / validation / test splits by spatial cell: one split per cell over a million samples,
the requested proportions, the SQL function equal to the NumPy one, splits stored with every
row and never moved by an expansion, and the split filter of the samples endpoint, the export
and the command line."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq
import pytest

from heimdall_synth.kernel import GenerationConfig, run_attempts
from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.kernel.splits import SPLITS, cell_of, split_of
from heimdall_synth.service.engine.request import ConflictError
from heimdall_synth.service.storage.migrations import load_migrations, upgrade
from tests.helpers import cli_json, expand, generate, new_database, rows, submit


def test_a_million_samples_never_share_a_cell_across_splits_and_keep_the_proportions():
    batch = run_attempts(GenerationConfig.from_dict({}), 2026, 0, 1_130_000)
    ok = batch.accepted()
    assert len(ok.tx_latitude) >= 1_000_000
    lat, lon = ok.tx_latitude[:1_000_000], ok.tx_longitude[:1_000_000]
    split = split_of(lat, lon, 1000.0, 0.8, 0.1)
    row, col = cell_of(lat, lon, 1000.0)
    cells = row * 2**32 + col
    order = np.argsort(cells, kind="stable")
    same_cell = cells[order][1:] == cells[order][:-1]
    assert same_cell.sum() > 500_000  # the cells really hold many samples each
    assert np.all(split[order][1:][same_cell] == split[order][:-1][same_cell])
    shares = np.bincount(split, minlength=3) / len(split)
    np.testing.assert_allclose(shares, [0.8, 0.1, 0.1], atol=0.01)
    # a 200 m cell or other fractions: the same promises
    split = split_of(lat, lon, 200.0, 0.6, 0.3)
    np.testing.assert_allclose(np.bincount(split, minlength=3) / len(split), [0.6, 0.3, 0.1],
                               atol=0.01)


def test_cells_are_about_their_size_in_metres_everywhere():
    for lat in (0.0, 45.0, 70.0, -33.9):
        row, col = cell_of([lat, lat + 1000 / 111_320, lat], [10.0, 10.0, 10.0 + 0.0001],
                           1000.0)
        assert row[1] == row[0] + 1 and col[2] - col[0] in (0, 1)
        east = 1000.0 / (111_320 * np.cos(np.radians((row[0] + 0.5) * 1000 / 111_320)))
        r2, c2 = cell_of([lat, lat], [10.0, 10.0 + east * 1.001], 1000.0)
        assert c2[1] - c2[0] == 1


def test_the_sql_function_is_the_numpy_function(conn):
    rng = np.random.default_rng(7)
    lat = rng.uniform(-89.0, 89.0, 20_000)
    lon = rng.uniform(-180.0, 180.0, 20_000)
    for cell_m, train, validation in ((1000.0, 0.8, 0.1), (37.5, 0.5, 0.25), (50_000.0, 0.0, 1.0)):
        want = split_of(lat, lon, cell_m, train, validation)
        with conn.transaction():
            got = conn.execute(
                "SELECT array_agg(heimdall.split_of(a, o, %s, %s, %s) ORDER BY k) FROM "
                "unnest(%s::float8[], %s::float8[]) WITH ORDINALITY AS t(a, o, k)",
                (cell_m, train, validation, lat.tolist(), lon.tolist())).fetchone()[0]
        assert np.array_equal(np.array(got), want), cell_m


def test_rows_carry_their_split_and_an_expansion_never_moves_one(conn, db_url):
    fields = {"split_cell_m": 500.0, "split_train": 0.5, "split_validation": 0.3}
    dataset_id, _ = generate(conn, db_url, "splits", 300, seed=4, **fields)
    stored = rows(conn, dataset_id, "sample_index, tx_latitude, tx_longitude, split")
    lat = np.array([r[1] for r in stored])
    lon = np.array([r[2] for r in stored])
    assert [r[3] for r in stored] == split_of(lat, lon, 500.0, 0.5, 0.3).tolist()
    expand(conn, db_url, dataset_id, 200)
    after = rows(conn, dataset_id, "sample_index, tx_latitude, tx_longitude, split")
    assert after[:300] == stored
    lat = np.array([r[1] for r in after])
    lon = np.array([r[2] for r in after])
    assert [r[3] for r in after] == split_of(lat, lon, 500.0, 0.5, 0.3).tolist()
    for change in ({"split_cell_m": 1000.0}, {"split_train": 0.7}):
        with pytest.raises(ConflictError) as refused:
            submit(conn, expand_dataset_id=dataset_id, num_samples=5,
                   allow_parameter_override=True, **change)
        assert refused.value.fields == list(change)
    with pytest.raises(ConfigError, match="split_validation"):
        submit(conn, name="too-much", num_samples=5, split_train=0.8, split_validation=0.3)


def test_rows_written_before_splits_get_theirs_from_the_migration(pg_server_url):
    migrations = load_migrations()
    before = [m for m in migrations if m.version < 7]
    with new_database(pg_server_url, "split_backfill") as url:
        import psycopg
        with psycopg.connect(url) as conn:
            upgrade(conn, before)
            conn.execute("INSERT INTO heimdall.synthetic_datasets (id, name, seed, config) "
                         "VALUES ('01a00000-0000-7000-8000-000000000001', 'old', 1, "
                         "'{\"split_cell_m\": 250.0}'::jsonb)")
            conn.execute(
                "INSERT INTO heimdall.measurement_features (recording_session_id, dataset_id, "
                "sample_index, attempt_index, tx_latitude, tx_longitude, rx_id) SELECT "
                "gen_random_uuid(), '01a00000-0000-7000-8000-000000000001', k, k, "
                "45.0 + k * 0.0013, 7.5 + k * 0.0017, ARRAY[0]::int2[] "
                "FROM generate_series(0, 999) k")
            conn.commit()
            upgrade(conn, migrations)
            got = conn.execute("SELECT tx_latitude, tx_longitude, split FROM "
                               "heimdall.measurement_features ORDER BY sample_index").fetchall()
    lat, lon, split = map(np.array, zip(*got))
    assert np.array_equal(split, split_of(lat, lon, 250.0, 0.8, 0.1))


def test_the_split_filter_over_http_and_the_command_line(api, db_url, tmp_path):
    created = api.generate(name="filtered", num_samples=400, seed=3, split_cell_m=2000.0)
    api.wait(created["job_id"])
    path = f"/datasets/{created['dataset_id']}/samples"
    every = api.get(path + "?limit=1000").json
    assert every["split"] == "all" and every["num_samples"] == 400
    by_split = {s["sample_index"]: s["split"] for s in every["samples"]}
    assert set(by_split.values()) == set(SPLITS)
    for name in SPLITS:
        page = api.get(path + f"?split={name}&limit=1000").json
        want = sorted(k for k, v in by_split.items() if v == name)
        assert page["num_samples"] == page["count"] == len(want)
        assert [s["sample_index"] for s in page["samples"]] == want
        reply = api.get(f"/datasets/{created['dataset_id']}/export?format=parquet&split={name}")
        assert reply.status == 200
        table = pq.read_table(io.BytesIO(reply.raw))
        assert table["sample_index"].to_pylist() == want
        assert set(table["split"].to_pylist()) <= {SPLITS.index(name)}
    for bad in (path + "?split=holdout", f"/datasets/{created['dataset_id']}/export?split=x"):
        reply = api.get(bad)
        assert (reply.status, reply.json["field"]) == (422, "split")
    out = tmp_path / "test.parquet"
    done = cli_json(db_url, "export", "filtered", "--split", "test", "--out", out)
    assert done["split"] == "test"
    assert pq.read_table(out)["sample_index"].to_pylist() == sorted(
        k for k, v in by_split.items() if v == "test")
