"""Terrain (kernel/terrain.py): elevation grids from SRTM tiles, profiles, and the terrain loss
of a link held to P.526 on synthetic grids and to what real terrain does (matplotlib's sample
elevation model of the Jacksboro fault, Tennessee: 3 arc-second cells)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from heimdall_synth.kernel import itu, terrain
from heimdall_synth.kernel.terrain import ElevationGrid, TerrainError, link_loss_db
from tests.helpers import jacksboro

F_MHZ = 145.0
AE_KM = 6371.0 * 4.0 / 3.0
ARCSEC3 = 1.0 / 1200.0




def test_a_profile_has_a_point_on_every_grid_line_it_crosses_and_no_coarser_step():
    """On grids whose height is the row (or column) number, a profile's heights are its
    points' grid coordinates: interior points lie on grid lines (whole numbers along the
    major axis), no step moves more than one cell along either axis, and the distances run
    from 0 to the great-circle length."""
    rows, cols = np.mgrid[0:601, 0:601].astype(float)
    by_row = ElevationGrid.from_array(rows, 45.5, 7.0, ARCSEC3, ARCSEC3)
    by_col = ElevationGrid.from_array(cols, 45.5, 7.0, ARCSEC3, ARCSEC3)
    for end in ((45.1, 7.4), (45.1, 7.06), (45.44, 7.4), (45.3, 7.3)):
        d, r = by_row.profile(45.45, 7.05, *end)
        d2, c = by_col.profile(45.45, 7.05, *end)
        assert np.array_equal(d, d2)
        assert d[0] == 0.0 and d[-1] == pytest.approx(terrain.great_circle_km(45.45, 7.05, *end))
        assert (np.diff(d) > 0).all()
        assert np.abs(np.diff(r)).max() <= 1.0 + 1e-9 and np.abs(np.diff(c)).max() <= 1.0 + 1e-9
        inner_r, inner_c = r[1:-1], c[1:-1]
        assert ((np.abs(inner_r - np.rint(inner_r)) < 1e-6)
                | (np.abs(inner_c - np.rint(inner_c)) < 1e-6)).all()
        # every line of the major axis between the ends is crossed once
        span_r, span_c = abs(r[-1] - r[0]), abs(c[-1] - c[0])
        assert len(d) - 2 >= math.floor(max(span_r, span_c)) - 1


def test_the_kernel_walks_the_readable_profile():
    """``terrain_link_db`` (one pass over the tiled int16 grid) equals ``link_loss_db`` (the
    readable profile and P.526's array functions) on real terrain, in every direction."""
    grid = jacksboro()
    tiles, geo = grid.kernel_arrays()
    rng = np.random.default_rng(5)
    s, n, w, e = grid.bounds
    for _ in range(60):
        lat1, lat2 = rng.uniform(s, n, 2)
        lon1, lon2 = rng.uniform(w, e, 2)
        d = terrain.great_circle_km(lat1, lon1, lat2, lon2)
        loss, v, ok = terrain.terrain_link_db(
            tiles, geo, lat1, lon1, grid.height_at(lat1, lon1), 10.0, lat2, lon2,
            grid.height_at(lat2, lon2), 1.5, d, F_MHZ, AE_KM)
        assert ok
        assert loss == pytest.approx(link_loss_db(grid, lat1, lon1, 10.0, lat2, lon2, 1.5, F_MHZ),
                                     abs=1e-6)


def test_the_model_reads_heights_to_the_metre_and_refuses_impossible_ones():
    grid = ElevationGrid.from_array(np.full((3, 3), 100.4), 45.0, 7.0, 0.01, 0.01)
    assert grid.height_at(44.99, 7.01) == 100.0
    with pytest.raises(TerrainError, match="between -32768 and 32767 m"):
        ElevationGrid.from_array(np.full((3, 3), 40000.0), 45.0, 7.0, 0.01, 0.01)


def test_a_link_leaving_the_grid_is_an_error_naming_its_bounds():
    grid = ElevationGrid.from_array(np.zeros((11, 11)), 45.0, 7.0, 0.01, 0.01)
    with pytest.raises(TerrainError, match=r"leaves the grid \(latitude 44\.9.* to 45\.0"):
        link_loss_db(grid, 44.95, 7.05, 10.0, 45.2, 7.05, 1.5, F_MHZ)


def test_on_a_flat_grid_the_loss_is_the_smooth_earths():
    grid = ElevationGrid.from_array(np.zeros((401, 401)), 45.2, 7.0, 0.001, 0.001)
    d, _ = grid.profile(45.15, 7.02, 44.85, 7.38)
    flat = itu.delta_bullington_db(d, np.zeros_like(d), 30.0, 2.0, F_MHZ, AE_KM)
    assert link_loss_db(grid, 45.15, 7.02, 30.0, 44.85, 7.38, 2.0, F_MHZ) == pytest.approx(flat)
    assert flat > 0.0


def test_a_single_ridge_across_the_link_is_p526s_knife_edge():
    """A north-south ridge 300 m high on flat ground (its crest three cells, 130 m, wide, so
    that the profile's samples, which fall between cell centres, reach its full height),
    crossed by an east-west link with antennas 100 m and 80 m high: P.526's knife edge J(v) at
    the ridge (with the earth's bulge there), plus Bullington's correction, within 0.5 dB."""
    heights = np.zeros((201, 801))
    heights[:, 399:402] = 300.0
    grid = ElevationGrid.from_array(heights, 45.1, 7.0, ARCSEC3, ARCSEC3)
    lat = 45.1 - 100 * ARCSEC3
    lon_ridge = 7.0 + 400 * ARCSEC3
    lon1, lon2 = lon_ridge - 250 * ARCSEC3, lon_ridge + 350 * ARCSEC3
    d1 = terrain.great_circle_km(lat, lon1, lat, lon_ridge)
    d2 = terrain.great_circle_km(lat, lon_ridge, lat, lon2)
    d = d1 + d2
    wavelength = 299_792_458.0 / (F_MHZ * 1e6)
    clearance = 300.0 + 500.0 * d1 * d2 / AE_KM - (100.0 * d2 + 80.0 * d1) / d
    v = clearance * math.sqrt(2.0 * d * 1000.0 / (wavelength * d1 * 1000.0 * d2 * 1000.0))
    j = 6.9 + 20.0 * math.log10(math.sqrt((v - 0.1) ** 2 + 1.0) + v - 0.1)
    expected = j + (1.0 - math.exp(-j / 6.0)) * (10.0 + 0.02 * d)
    got = link_loss_db(grid, lat, lon1, 100.0, lat, lon2, 80.0, F_MHZ)
    assert got == pytest.approx(expected, abs=0.5)


def test_real_terrain_a_ridge_station_sees_farther_than_a_valley_one():
    """From the highest and the lowest cell of the Jacksboro model, links of 6 km in 36
    directions to a receiver 1.5 m up: the station on the ridge loses far less."""
    grid = jacksboro()
    heights = grid.heights

    def site(index):
        r, c = np.unravel_index(index, heights.shape)
        return grid.north - r * grid.dlat, grid.west + c * grid.dlon

    def mean_loss(lat, lon):
        losses = []
        for bearing in np.radians(np.arange(0, 360, 10)):
            lat2 = lat + 6.0 / 111.2 * math.cos(bearing)
            lon2 = lon + 6.0 / (111.2 * math.cos(math.radians(lat))) * math.sin(bearing)
            losses.append(link_loss_db(grid, lat, lon, 10.0, lat2, lon2, 1.5, F_MHZ))
        return float(np.mean(losses))

    interior = np.zeros_like(heights, bool)
    interior[90:-90, 110:-110] = True  # 6 km fit inside the grid in every direction
    ridge = site(np.where(interior, heights, -np.inf).argmax())
    valley = site(np.where(interior, heights, np.inf).argmin())
    assert mean_loss(*ridge) + 10.0 < mean_loss(*valley)


def test_real_terrain_links_across_a_ridge_lose_more_than_links_along_the_valley():
    grid = jacksboro()
    heights = grid.heights
    r, c = np.unravel_index(np.where(
        np.pad(np.ones((164, 183), bool), ((90, 90), (110, 110))), heights, np.inf).argmin(),
        heights.shape)
    lat, lon = grid.north - r * grid.dlat, grid.west + c * grid.dlon
    ground = float(heights[r, c])
    across, along = [], []
    for bearing in np.radians(np.arange(0, 360, 5)):
        lat2 = lat + 6.0 / 111.2 * math.cos(bearing)
        lon2 = lon + 6.0 / (111.2 * math.cos(math.radians(lat))) * math.sin(bearing)
        _, profile = grid.profile(lat, lon, lat2, lon2)
        loss = link_loss_db(grid, lat, lon, 10.0, lat2, lon2, 1.5, F_MHZ)
        if profile.max() > ground + 250.0:
            across.append(loss)
        elif profile.max() < ground + 60.0:
            along.append(loss)
    assert across and along
    assert np.mean(across) > np.mean(along) + 10.0


def test_the_loss_of_a_link_is_a_pure_function_of_its_ends():
    grid = jacksboro()
    a, b = (36.60, -84.30), (36.55, -84.20)
    first = link_loss_db(grid, *a, 10.0, *b, 1.5, F_MHZ)
    assert all(link_loss_db(grid, *a, 10.0, *b, 1.5, F_MHZ) == first for _ in range(5))
    assert link_loss_db(grid, *b, 1.5, *a, 10.0, F_MHZ) == pytest.approx(first, abs=1e-6)
    assert jacksboro().sha256() == grid.sha256()


def write_hgt(path, heights):
    np.asarray(heights, ">i2").tofile(path)


def test_hgt_tiles_are_read_and_merged(tmp_path):
    side = 1201
    rows = np.arange(side, dtype=np.int32)[:, None]
    west = (100 + rows + np.arange(side)[None, :]) % 3000
    east = (100 + rows + np.arange(side - 1, 2 * side - 1)[None, :]) % 3000  # shares the edge
    write_hgt(tmp_path / "N45E007.hgt", west)
    write_hgt(tmp_path / "N45E008.hgt", east)
    a, b = terrain.read_hgt(tmp_path / "N45E007.hgt"), terrain.read_hgt(tmp_path / "N45E008.hgt")
    assert a.bounds == pytest.approx((45.0, 46.0, 7.0, 8.0)) and a.dlat == pytest.approx(1 / 1200)
    assert a.height_at(46.0, 7.0) == 100.0 and a.height_at(45.0, 8.0) == float(west[-1, -1])
    grid = terrain.merge([b, a])
    assert grid.heights.shape == (side, 2 * side - 1)
    assert grid.bounds == pytest.approx((45.0, 46.0, 7.0, 9.0))
    assert grid.height_at(45.5, 8.0) == pytest.approx(a.height_at(45.5, 8.0))
    assert grid.sha256() != a.sha256()


def test_bad_hgt_tiles_are_refused_naming_the_file(tmp_path):
    write_hgt(tmp_path / "N45E007.hgt", np.zeros(1000))
    with pytest.raises(TerrainError, match="N45E007.hgt: 2000 bytes"):
        terrain.read_hgt(tmp_path / "N45E007.hgt")
    voids = np.zeros((1201, 1201))
    voids[5, 5] = terrain.HGT_VOID
    write_hgt(tmp_path / "S01W002.hgt", voids)
    with pytest.raises(TerrainError, match="S01W002.hgt: 1 void cells"):
        terrain.read_hgt(tmp_path / "S01W002.hgt")
    write_hgt(tmp_path / "tile.hgt", np.zeros((1201, 1201)))
    with pytest.raises(TerrainError, match="named like"):
        terrain.read_hgt(tmp_path / "tile.hgt")
