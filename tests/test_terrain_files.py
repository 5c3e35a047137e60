"""Terrain files: GeoTIFF read through rasterio (the geotiff extra) at its cell centres, exactly;
refused when it cannot be a terrain (nodata, projected CRS, rotated, several bands...) naming the
file; the same grid as the SRTM .hgt tile of the same area and lattice, and merged with .hgt
tiles; registered over the command line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine

from heimdall_synth.kernel.config import ConfigError
from heimdall_synth.kernel.terrain import read_hgt
from heimdall_synth.service.storage import terrains
from tests.helpers import cli, cli_json

ARCSEC30 = 1.0 / 120.0
ARCSEC3 = 1.0 / 1200.0
SIDE = 1201


def write_geotiff(path, heights, north, west, dlat, dlon, *, crs="EPSG:4326", nodata=None,
                  point=False, transform=None, bands=1):
    """``heights`` (rows, cols) as a GeoTIFF whose first cell's CENTRE is (north, west): the
    area-type transform has its origin half a cell north-west of it. ``point``: a
    pixel-is-point file (GDAL writes its tie point at the first cell's centre)."""
    heights = np.asarray(heights)
    transform = transform or Affine(dlon, 0.0, west - dlon / 2, 0.0, -dlat, north + dlat / 2)
    with rasterio.open(path, "w", driver="GTiff", width=heights.shape[1],
                       height=heights.shape[0], count=bands, dtype=heights.dtype.name, crs=crs,
                       transform=transform, nodata=nodata) as dst:
        if point:
            dst.update_tags(AREA_OR_POINT="Point")
        for band in range(1, bands + 1):
            dst.write(heights, band)
    return path


def known_heights(rows=121, cols=121):
    """Heights that are a known function of (row, column), exact in float32."""
    r, c = np.mgrid[0:rows, 0:cols]
    return (250.0 + 3.0 * r - 0.5 * c + (r * c) % 7).astype(np.float32)


def hgt_tile(path):
    """A 3 arc-second SRTM tile (1201 x 1201 big-endian int16) with a ridge across it."""
    rows = np.arange(SIDE)[:, None]
    heights = (200 + (rows * 3 + np.arange(SIDE)[None, :]) % 500).astype(np.int16)
    heights.astype(">i2").tofile(path)
    return heights


def test_a_geotiff_is_read_at_its_cell_centres_exactly(conn, tmp_path, monkeypatch):
    heights = known_heights()
    path = write_geotiff(tmp_path / "area.tif", heights, 45.5, 7.25, ARCSEC30, ARCSEC30)
    grid = terrains.terrain_from_files([path])
    assert np.array_equal(grid.heights, heights) and grid.heights.dtype == np.float32
    assert (grid.north, grid.west, grid.dlat, grid.dlon) == (45.5, 7.25, ARCSEC30, ARCSEC30)
    assert grid.bounds == (45.5 - 120 * ARCSEC30, 45.5, 7.25, 7.25 + 120 * ARCSEC30)
    assert grid.bounds == pytest.approx((44.5, 45.5, 7.25, 8.25), abs=1e-12)
    assert grid.height_at(45.5 - 10 * ARCSEC30, 7.25 + 20 * ARCSEC30) == heights[10, 20]
    # a pixel-is-point file of the same cells is the same grid
    point = write_geotiff(tmp_path / "point.tif", heights, 45.5, 7.25, ARCSEC30, ARCSEC30,
                          point=True)
    with rasterio.open(point) as src:
        assert src.tags()["AREA_OR_POINT"] == "Point"
    assert terrains.terrain_from_files([point]).sha256() == grid.sha256()
    # also where GDAL is told to ignore pixel-is-point (its transform is then the centre)
    monkeypatch.setenv("GTIFF_POINT_GEO_IGNORE", "YES")
    with rasterio.open(point) as src:
        assert (src.transform.c, src.transform.f) == (7.25, 45.5)
    assert terrains.terrain_from_files([point]).sha256() == grid.sha256()
    monkeypatch.delenv("GTIFF_POINT_GEO_IGNORE")
    # stored and read back
    row = terrains.add_terrain(conn, "tif", grid, ["area.tif"])
    assert (row["rows"], row["cols"], row["spacing_arcsec"]) == (121, 121, 30.0)
    assert (row["south"], row["north"], row["west"], row["east"]) == grid.bounds[:2] + (
        7.25, grid.east)
    back = terrains.get_terrain(conn, "tif")
    assert back.sha256() == grid.sha256() and np.array_equal(back.heights, heights)


def test_an_hgt_tile_and_a_geotiff_of_its_area_and_lattice_are_the_same_grid(tmp_path):
    heights = hgt_tile(tmp_path / "N45E007.hgt")
    tif = write_geotiff(tmp_path / "N45E007.tif", heights, 46.0, 7.0, ARCSEC3, ARCSEC3)
    from_hgt = terrains.terrain_from_files([tmp_path / "N45E007.hgt"])
    from_tif = terrains.terrain_from_files([tif])
    assert from_tif.sha256() == from_hgt.sha256() == read_hgt(tmp_path / "N45E007.hgt").sha256()
    # a GeoTIFF next to an .hgt tile, on its lattice: merged (sharing the tile's east edge)
    east = (heights[:, -1:] + np.arange(SIDE, dtype=np.int16)[None, :] % 50).astype(np.int16)
    tif2 = write_geotiff(tmp_path / "east.tiff", east, 46.0, 8.0, ARCSEC3, ARCSEC3)
    merged = terrains.terrain_from_files([tmp_path / "N45E007.hgt", tif2])
    assert merged.heights.shape == (SIDE, 2 * SIDE - 1)
    assert merged.bounds == pytest.approx((45.0, 46.0, 7.0, 9.0), abs=1e-12)
    assert np.array_equal(merged.heights[:, :SIDE], heights)
    assert np.array_equal(merged.heights[:, SIDE - 1:], east)


def test_a_geotiff_that_cannot_be_a_terrain_is_refused_naming_the_file(tmp_path):
    h = known_heights(5, 6)
    voids = h.astype(np.int16)
    voids[2, 3] = -32768
    nan = h.copy()
    nan[0, 0] = np.nan
    rotated = Affine(ARCSEC30, 0.001, 7.0, 0.0, -ARCSEC30, 46.0)
    cases = {
        "nodata.tif": (dict(heights=voids, nodata=-32768), "1 cells without a height"),
        "nan.tif": (dict(heights=nan), "NaN"),
        "utm.tif": (dict(heights=h, crs="EPSG:32632"), r"EPSG:32632\) is projected"),
        "paris.tif": (dict(heights=h, crs="EPSG:4807"), "grad from the paris meridian"),
        "nocrs.tif": (dict(heights=h, crs=None), "no coordinate reference system"),
        "rotated.tif": (dict(heights=h, transform=rotated), "rotated"),
        "southup.tif": (dict(heights=h, transform=Affine(ARCSEC30, 0, 7.0, 0, ARCSEC30, 45.0)),
                        "not north-up"),
        "bands.tif": (dict(heights=h, bands=3), "has 3 bands"),
        "complex.tif": (dict(heights=h.astype(np.complex64)), "complex64 values"),
        "outside.tif": (dict(heights=h, transform=Affine(0.01, 0, 179.99, 0, -0.01, 46.0)),
                        r"leave \[-90, 90\] x \[-180, 180\]"),
        "row.tif": (dict(heights=h[:1]), "at least 2 x 2 heights"),
    }
    for name, (kw, why) in cases.items():
        heights = kw.pop("heights")
        path = write_geotiff(tmp_path / name, heights, 46.0, 7.0, ARCSEC30, ARCSEC30, **kw)
        with pytest.raises(ConfigError, match=f"^files: {name}: .*{why}") as refused:
            terrains.terrain_from_files([path])
        assert refused.value.field == "files"
    # not a TIFF at all; not a file that is read
    (tmp_path / "broken.tif").write_bytes(b"II*\x00")
    with pytest.raises(ConfigError, match="broken.tif: not a readable GeoTIFF"):
        terrains.terrain_from_files([tmp_path / "broken.tif"])
    (tmp_path / "heights.txt").write_text("1 2 3")
    with pytest.raises(ConfigError, match="heights.txt: only SRTM .hgt tiles and GeoTIFF"):
        terrains.terrain_from_files([tmp_path / "heights.txt"])
    # a good file with a bad one is refused as a whole
    good = write_geotiff(tmp_path / "good.tif", h, 46.0, 7.0, ARCSEC30, ARCSEC30)
    with pytest.raises(ConfigError, match="nodata.tif"):
        terrains.terrain_from_files([good, tmp_path / "nodata.tif"])


def test_files_on_different_lattices_or_too_many_cells_are_refused(tmp_path, monkeypatch):
    h = known_heights(5, 5)
    a = write_geotiff(tmp_path / "a.tif", h, 46.0, 7.0, ARCSEC30, ARCSEC30)
    b = write_geotiff(tmp_path / "b.tif", h, 46.0, 8.0, ARCSEC3, ARCSEC3)
    with pytest.raises(ConfigError, match="^files: tiles of different spacing"):
        terrains.terrain_from_files([a, b])
    far = write_geotiff(tmp_path / "far.tif", h, 46.0, 9.0, ARCSEC30, ARCSEC30)
    monkeypatch.setattr(terrains, "MAX_CELLS", 1000)
    with pytest.raises(ConfigError, match="span 1,225 cells; a terrain holds at most 1,000"):
        terrains.terrain_from_files([a, far])


def test_without_rasterio_a_geotiff_is_refused_saying_how_to_install_it(tmp_path, monkeypatch):
    path = write_geotiff(tmp_path / "a.tif", known_heights(3, 3), 46.0, 7.0, ARCSEC30, ARCSEC30)
    monkeypatch.setitem(sys.modules, "rasterio", None)   # import rasterio raises ImportError
    with pytest.raises(ConfigError) as refused:
        terrains.terrain_from_files([path])
    assert refused.value.field == "files"
    assert "a.tif" in str(refused.value)
    assert "pip install 'heimdall-synth[geotiff]'" in str(refused.value)


def test_terrain_add_reads_a_geotiff(db, tmp_path):
    heights = known_heights()
    path = write_geotiff(tmp_path / "valley.tif", heights, 45.5, 7.25, ARCSEC30, ARCSEC30)
    added = cli_json(db, "terrain", "add", "valley", path)
    assert added["sha256"] == terrains.terrain_from_files([path]).sha256()
    assert added["sources"] == ["valley.tif"] and (added["rows"], added["cols"]) == (121, 121)
    assert added["spacing_arcsec"] == 30.0
    assert cli_json(db, "terrain", "list")["terrains"][0]["name"] == "valley"
    bad = write_geotiff(tmp_path / "utm.tif", heights, 45.5, 7.25, ARCSEC30, ARCSEC30,
                        crs="EPSG:32632")
    refused = cli(db, "terrain", "add", "other", bad)
    assert refused.returncode == 2 and "utm.tif" in refused.stderr, refused.stderr
    assert "projected" in refused.stderr
    assert [t["name"] for t in cli_json(db, "terrain", "list")["terrains"]] == ["valley"]
    assert "GeoTIFF" in cli(db, "terrain", "add", "--help").stdout
