"""Model version 2 in the kernel: what is fixed in the world is fixed in the data.

A fixed station's antenna, clutter and polarization never change between attempts; a link's
terrain loss is a pure function of its two ends (the same across attempts and seeds); the
shadowing is a deterministic field over the transmitter's position within a dataset.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from heimdall_synth.kernel import GenerationConfig, run_attempts
from heimdall_synth.kernel import shadowing as S
from heimdall_synth.kernel.attempt import S_AGL, S_GROUND, S_LAT, S_LON
from heimdall_synth.kernel.batch import clutter_environments, pack_config, reference_latitude
from heimdall_synth.kernel.layout import EARTH_RADIUS_M, K_FACTOR
from heimdall_synth.kernel.terrain import TerrainError, link_diffraction, terrain_link_db
from tests.helpers import jacksboro

AE_KM = K_FACTOR * EARTH_RADIUS_M / 1000.0
STATIONS = [
    {"name": "beam", "lat": 45.03, "lon": 7.27, "alt_m": 600.0,
     "antenna": {"type": "yagi", "azimuth_deg": 90.0, "gain_dbi": 14.0,
                 "polarization": "horizontal"}, "clutter_db": 7.5},
    {"name": "omni", "lat": 45.234, "lon": 7.857, "alt_m": 300.0, "antenna_height_m": 30.0},
    {"name": "town", "lat": 44.9, "lon": 7.9, "alt_m": 250.0, "clutter_db": 3.0},
]


def test_a_fixed_stations_antenna_clutter_and_polarization_are_the_same_in_every_attempt():
    cfg = GenerationConfig.from_dict({"receivers": STATIONS})
    batch = run_attempts(cfg, 3, 0, 20_000)
    on = ~np.isnan(batch.rx_gain_db[:, 0])
    # The omni station's gain is its own in every attempt; the yagi's depends only on the
    # direction of the transmitter (its pattern), never on a draw.
    assert np.all(batch.rx_gain_db[on, 1] == 1.5)
    bearing = np.degrees(np.arctan2(
        np.sin(np.radians(batch.tx_longitude - 7.27)) * np.cos(np.radians(batch.tx_latitude)),
        np.cos(np.radians(45.03)) * np.sin(np.radians(batch.tx_latitude))
        - np.sin(np.radians(45.03)) * np.cos(np.radians(batch.tx_latitude))
        * np.cos(np.radians(batch.tx_longitude - 7.27))))
    offset = np.abs((bearing - 90.0 + 180.0) % 360.0 - 180.0)
    expected = 14.0 - np.minimum(3.0 * (offset / 22.5) ** 2, 20.0)
    np.testing.assert_allclose(batch.rx_gain_db[on, 0], expected[on], atol=1e-6)
    assert np.all(batch.rx_clutter_db[on] == np.array([7.5, 0.0, 3.0]))
    # horizontal station: cross-polar (10-15 dB) with every vertical transmitter
    vertical_tx = batch.tx_antenna[on] != 2
    assert np.all(batch.polarization_db[on][vertical_tx, 0] >= 10.0)
    assert np.all(batch.polarization_db[on][vertical_tx, 1] <= 0.5)
    assert np.all(batch.rx_antenna[on] == np.array([1, 0, 0]))


def test_shadowing_is_a_field_over_the_transmitters_position_within_a_dataset():
    cfg = GenerationConfig.from_dict({"receivers": STATIONS})
    seed = 11
    batch = run_attempts(cfg, seed, 0, 3000)
    fields = S.station_fields(seed, 3, cfg.shadowing_correlation_m)
    cos0 = math.cos(math.radians(reference_latitude(cfg)))
    on = ~np.isnan(batch.shadowing_db[:, 0])
    for i in np.flatnonzero(on)[:300]:
        x = EARTH_RADIUS_M * math.radians(batch.tx_longitude[i]) * cos0
        y = EARTH_RADIUS_M * math.radians(batch.tx_latitude[i])
        for j in range(3):
            assert batch.shadowing_db[i, j] == pytest.approx(
                S.shadowing_db(*fields, j, x, y, 5.5, 0.5), abs=1e-9)
    spread = batch.shadowing_db[on].std(axis=0)
    assert np.all(np.abs(spread - 5.5) < 0.6)
    # another seed is another dataset: other fields
    other = run_attempts(cfg, seed + 1, 0, 3000)
    assert not np.allclose(other.shadowing_db[on][:50], batch.shadowing_db[on][:50])


def jacksboro_stations():
    return [{"name": "ridge", "lat": 36.62, "lon": -84.20, "antenna_height_m": 10.0},
            {"name": "valley", "lat": 36.55, "lon": -84.30},
            {"name": "east", "lat": 36.66, "lon": -84.15, "alt_m": 500.0}]


def test_terrain_loss_of_a_link_is_a_pure_function_of_its_ends_across_seeds():
    """Random receivers on real terrain: each link's diffraction is the delta-Bullington loss
    of its own profile, whatever the seed or attempt."""
    grid = jacksboro()
    cfg = GenerationConfig.from_dict({
        "terrain": "jacksboro", "use_random_receivers": True, "min_receivers_count": 3,
        "max_receivers_count": 5, "area_lat_min": 36.50, "area_lat_max": 36.68,
        "area_lon_min": -84.36, "area_lon_max": -84.13, "margin_deg": 0.02,
        "enable_clutter": False})
    for seed in (1, 2):
        batch = run_attempts(cfg, seed, 0, 200, terrain=grid)
        for i in range(0, 200, 7):
            if np.isnan(batch.diffraction_db[i, 0]):
                continue
            ground = batch.tx_ground_m[i]
            for j in range(batch.n_receivers[i]):
                loss, _, ok = terrain_link_db(
                    *grid.kernel_arrays(), batch.tx_latitude[i], batch.tx_longitude[i], ground, 1.5,
                    batch.rx_lat[i, j], batch.rx_lon[i, j], batch.rx_alt_m[i, j], 10.0,
                    batch.distance_km[i, j], 145.0, AE_KM)
                assert ok and batch.diffraction_db[i, j] == pytest.approx(loss, abs=1e-9)
        assert np.nanmax(batch.diffraction_db) > 10.0


def test_fixed_stations_on_terrain_read_their_ground_and_loss_maps():
    grid = jacksboro()
    cfg = GenerationConfig.from_dict({"terrain": "jacksboro", "receivers": jacksboro_stations(),
                                      "margin_deg": 0.03})
    inputs = pack_config(cfg, 5, grid)
    assert inputs.st[0, S_GROUND] == pytest.approx(grid.height_at(36.62, -84.20))
    assert inputs.st[2, S_GROUND] == 500.0 and inputs.st[0, S_AGL] == 10.0
    a = run_attempts(cfg, 5, 0, 2000, terrain=grid)
    b = run_attempts(cfg, 6, 0, 2000, terrain=grid)
    np.testing.assert_allclose(a.tx_altitude_m, a.tx_ground_m + 1.5)
    # the same transmitter position and surroundings give the same loss in any dataset
    c = run_attempts(cfg, 5, 0, 2000, terrain=grid, threads=1)
    assert a.tobytes() == c.tobytes()
    assert np.nanstd(a.diffraction_db) > 1.0 and np.nanstd(b.diffraction_db) > 1.0


def test_each_node_of_a_loss_map_is_its_links_readable_profile_loss():
    """The maps fixed stations read (bilinearly, in the kernel and in the reference) hold at
    each node the delta-Bullington loss and v of that link's readable profile."""
    grid = jacksboro()
    cfg = GenerationConfig.from_dict({"terrain": "jacksboro", "receivers": jacksboro_stations(),
                                      "margin_deg": 0.03})
    inputs = pack_config(cfg, 5, grid)
    _, env_tab, profile_heights = clutter_environments(cfg)
    north, west, dlat, dlon = inputs.mgeo
    rng = np.random.default_rng(2)
    _, n_h, rows, cols = inputs.maps_loss.shape
    for _ in range(40):
        j, h = rng.integers(len(jacksboro_stations())), rng.integers(n_h)
        r, c = rng.integers(rows), rng.integers(cols)
        lat, lon = north - r * dlat, west + c * dlon
        st = inputs.st[j]
        loss, v = link_diffraction(grid, lat, lon, None, profile_heights[h], st[S_LAT],
                                   st[S_LON], st[S_GROUND], st[S_AGL], 145.0, AE_KM)
        assert inputs.maps_loss[j, h, r, c] == pytest.approx(loss, abs=1e-6)
        assert inputs.maps_v[j, h, r, c] == pytest.approx(max(v, -100.0), abs=1e-6)


def test_a_network_leaving_the_terrain_is_an_error_naming_the_grids_bounds():
    grid = jacksboro()
    stations = jacksboro_stations() + [{"name": "far", "lat": 37.5, "lon": -84.2, "alt_m": 300.0}]
    cfg = GenerationConfig.from_dict({"terrain": "jacksboro", "receivers": stations})
    with pytest.raises(TerrainError, match=r"latitude 36\.44708 to 36\.73292"):
        run_attempts(cfg, 1, 0, 10, terrain=grid)


def test_a_terrain_must_be_given_when_the_configuration_names_one():
    from heimdall_synth.kernel import ConfigError
    cfg = GenerationConfig.from_dict({"terrain": "jacksboro", "receivers": jacksboro_stations()})
    with pytest.raises(ConfigError, match="terrain"):
        run_attempts(cfg, 1, 0, 10)
    with pytest.raises(ConfigError, match="receivers\\[0\\].alt_m"):
        GenerationConfig.from_dict({"receivers": jacksboro_stations()})


def test_over_the_smooth_earth_a_stations_loss_is_read_from_its_distance_table():
    """Fixed stations without a terrain read their smooth-earth loss from a table by distance:
    its nodes are smooth_link_db's values, and between nodes it stays within 0.01 dB of the
    exact loss (and gives the same line-of-sight decision away from the boundary)."""
    from heimdall_synth.kernel import itu
    from heimdall_synth.kernel.batch import DIST_STEP_KM, distance_tables
    cfg = GenerationConfig.from_dict({"receivers": STATIONS})
    st = pack_config(cfg, 1).st
    loss, v = distance_tables(st, cfg, AE_KM)
    rng = np.random.default_rng(4)
    for j in range(len(STATIONS)):
        h2 = st[j, S_GROUND] + st[j, S_AGL]
        for k in rng.integers(1, loss.shape[1], 30):
            exact = itu.smooth_link_db(k * DIST_STEP_KM, cfg.tx_altitude_m, h2, 145.0, AE_KM)
            assert loss[j, k] == exact[0] and v[j, k] == exact[1]
        for d in rng.uniform(0.05, (loss.shape[1] - 2) * DIST_STEP_KM, 300):
            x = d / DIST_STEP_KM
            k = int(x)
            between = loss[j, k] + (loss[j, k + 1] - loss[j, k]) * (x - k)
            assert between == pytest.approx(
                itu.smooth_link_db(d, cfg.tx_altitude_m, h2, 145.0, AE_KM)[0], abs=0.01)
    batch = run_attempts(cfg, 1, 0, 2000)
    assert (batch.diffraction_db > 1.0).any() and (batch.diffraction_db == 0.0).any()
