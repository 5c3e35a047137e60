"""Registered terrains: SRTM tiles merged into one grid, stored in PostgreSQL with its SHA-256,
bounds and spacing, read back identical (and checked) by any process; over the command line."""

from __future__ import annotations

import numpy as np
import pytest

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.kernel.terrain import ElevationGrid, link_loss_db
from heimdall_synth.service.engine.request import ConflictError, NotFoundError
from heimdall_synth.service.storage import terrains
from tests.helpers import cli, cli_json

SIDE = 1201


def tiles(folder):
    """Two adjacent 3 arc-second tiles with a shared edge and a ridge across both."""
    rows = np.arange(SIDE)[:, None]
    west = 200 + (rows * 3 + np.arange(SIDE)[None, :]) % 500
    east = 200 + (rows * 3 + np.arange(SIDE - 1, 2 * SIDE - 1)[None, :]) % 500
    paths = [folder / "N45E007.hgt", folder / "N45E008.hgt"]
    for path, heights in zip(paths, (west, east)):
        np.asarray(heights, ">i2").tofile(path)
    return paths


def test_a_terrain_is_stored_and_read_back_identical(conn, tmp_path):
    grid = terrains.terrain_from_files(tiles(tmp_path))
    row = terrains.add_terrain(conn, "alps-test", grid, ["N45E007.hgt", "N45E008.hgt"])
    assert row["sha256"] == grid.sha256() and (row["rows"], row["cols"]) == (SIDE, 2 * SIDE - 1)
    assert (row["south"], row["north"], row["west"], row["east"]) == pytest.approx(
        (45.0, 46.0, 7.0, 9.0))
    assert row["spacing_arcsec"] == 3.0 and row["sources"] == ["N45E007.hgt", "N45E008.hgt"]
    back = terrains.get_terrain(conn, "alps-test")
    assert back.sha256() == grid.sha256() and np.array_equal(back.heights, grid.heights)
    link = (45.2, 7.5, 10.0, 45.6, 8.6, 1.5, 145.0)
    assert link_loss_db(back, *link) == link_loss_db(grid, *link)
    assert [t["name"] for t in terrains.list_terrains(conn)] == ["alps-test"]


def test_names_are_never_replaced_and_bad_input_changes_nothing(conn, tmp_path):
    grid = ElevationGrid.from_array(np.zeros((3, 3)), 45.0, 7.0, 0.01, 0.01)
    terrains.add_terrain(conn, "t", grid)
    with pytest.raises(ConflictError) as taken:
        terrains.add_terrain(conn, "t", grid)
    assert taken.value.fields == ["name"]
    with pytest.raises(ConfigError) as bad:
        terrains.add_terrain(conn, "", grid)
    assert bad.value.field == "name"
    (tmp_path / "N45E007.tif").write_bytes(b"II*\x00")
    with pytest.raises(ConfigError, match="N45E007.tif: not a readable GeoTIFF"):
        terrains.terrain_from_files([tmp_path / "N45E007.tif"])
    with pytest.raises(NotFoundError):
        terrains.get_terrain(conn, "missing")
    assert [t["name"] for t in terrains.list_terrains(conn)] == ["t"]
    terrains.delete_terrain(conn, "t")
    with pytest.raises(NotFoundError):
        terrains.delete_terrain(conn, "t")


def test_a_corrupted_grid_is_refused_on_read(conn):
    terrains.add_terrain(conn, "c", ElevationGrid.from_array(np.ones((4, 4)), 45.0, 7.0, 0.1,
                                                              0.1))
    with conn.transaction():
        conn.execute("UPDATE heimdall.terrains SET heights = %s WHERE name = 'c'",
                     (np.full(16, 2.0, "<f4").tobytes(),))
    with pytest.raises(ConflictError, match="SHA-256"):
        terrains.get_terrain(conn, "c")


def test_terrain_commands(db, tmp_path):
    paths = tiles(tmp_path)
    added = cli_json(db, "terrain", "add", "alps", *paths)
    assert added["name"] == "alps" and len(added["sha256"]) == 64
    listed = cli(db, "terrain", "list")
    assert listed.returncode == 0 and "alps" in listed.stdout and "1201x2401" in listed.stdout
    again = cli(db, "terrain", "add", "alps", *paths)
    assert again.returncode == 4 and "exists" in again.stderr
    bad = tmp_path / "N46E007.hgt"
    bad.write_bytes(b"\x00" * 10)
    refused = cli(db, "terrain", "add", "other", bad)
    assert refused.returncode == 2 and "N46E007.hgt" in refused.stderr
    assert cli_json(db, "terrain", "list")["terrains"][0]["name"] == "alps"
    assert cli(db, "terrain", "delete", "alps").returncode == 0
    assert cli(db, "terrain", "delete", "alps").returncode == 3


def test_a_process_reads_a_grid_once_and_keeps_it_by_hash(conn):
    grid = ElevationGrid.from_array(np.arange(30.0).reshape(5, 6), 45.0, 7.0, 0.1, 0.1)
    terrains.add_terrain(conn, "kept", grid)
    first = terrains.get_terrain(conn, "kept")
    assert terrains.get_terrain(conn, "kept") is first
    terrains.delete_terrain(conn, "kept")
    with pytest.raises(NotFoundError):  # the name, not the cache, decides what exists
        terrains.get_terrain(conn, "kept")


def test_over_the_command_line_a_dataset_keeps_its_terrain_and_model_version(db, tmp_path):
    """A terrain added from .hgt tiles is used by `generate --terrain`; the dataset records its
    SHA-256. An expansion after the name was given another grid, or of a dataset of model
    version 1, exits 4 naming what would change."""
    import json

    import psycopg
    paths = tiles(tmp_path)
    added = cli_json(db, "terrain", "add", "alps", *paths)
    request = tmp_path / "request.json"
    request.write_text(json.dumps({
        "name": "on-alps", "num_samples": 20, "terrain": "alps", "margin_deg": 0.05,
        "tx_power_dbm": 50.0, "tx_height_m": 20.0, "receivers": [
            {"name": "a", "lat": 45.3, "lon": 7.4, "antenna_height_m": 30.0},
            {"name": "b", "lat": 45.7, "lon": 7.9, "antenna_height_m": 30.0},
            {"name": "c", "lat": 45.4, "lon": 8.6, "antenna_height_m": 30.0},
            {"name": "d", "lat": 45.8, "lon": 8.3, "antenna_height_m": 30.0}]}))
    made = cli_json(db, "generate", "--request", request)
    assert made["status"] == "completed" and made["generated"] == 20
    assert cli_json(db, "expand", "on-alps", "--num-samples", 5)["status"] == "completed"
    with psycopg.connect(db) as conn:
        row = conn.execute("SELECT model_version, terrain_sha256 FROM "
                           "heimdall.synthetic_datasets WHERE name = 'on-alps'").fetchone()
    assert row == (2, added["sha256"])

    assert cli(db, "terrain", "delete", "alps").returncode == 0
    other = tmp_path / "other"
    other.mkdir()
    for path in tiles(other):  # the same tiles, one height changed
        heights = np.fromfile(path, ">i2")
        heights[5000] += 1
        heights.tofile(path)
    cli_json(db, "terrain", "add", "alps", *(other / p.name for p in paths))
    refused = cli(db, "expand", "on-alps", "--num-samples", 5)
    assert refused.returncode == 4 and "terrain" in refused.stderr and "SHA-256" in refused.stderr

    cli_json(db, "generate", "--name", "made-by-model-1", "--num-samples", 5)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("UPDATE heimdall.synthetic_datasets SET model_version = 1 "
                     "WHERE name = 'made-by-model-1'")
    old = cli(db, "expand", "made-by-model-1", "--num-samples", 5)
    assert old.returncode == 4 and "model version 1" in old.stderr
